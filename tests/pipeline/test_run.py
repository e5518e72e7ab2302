"""`mmdlr run` end to end on a small synthetic cohort: outputs, resumption, forcing, interruption,
reproducibility, provenance and the rendered report."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from mmdlr.analysis.features import META_COLUMNS
from mmdlr.paths import CONFIG_DIR
from mmdlr.pipeline.config import load_run_config
from mmdlr.pipeline.run import STAGES, run_pipeline

def test_every_stage_writes_its_outputs(finished_run):
    result, _ = finished_run
    out = result.out_dir
    assert [name for name in STAGES if (out / "stages" / f"{name}.json").is_file()] == list(STAGES)
    for modality in ("us", "mg", "mr"):
        deep = pd.read_csv(out / "features" / f"deep_{modality}.csv")
        assert deep.shape[1] == len(META_COLUMNS) + 1280 + 1  # ids, EfficientNet-Lite0 features, head probability
        assert (out / "deep" / "models" / modality / "model.pt").is_file()
        cases = pd.read_csv(out / "gradcam" / modality / "cases.csv", dtype={"patient_id": str})
        assert len(cases) >= 1 and (cases["probability_source"] == "network head, test split").all()
        assert set(cases["patient_id"]) <= set(deep.loc[deep["split"] == "test", "patient_id"].astype(str))
    results = out / "results"
    for name in ("table_radiomics.csv", "table_deep.csv", "table_fusion.csv", "predictions.csv",
                 "table_clinical.csv", "calibration.png", "comparisons.csv"):
        assert (results / name).is_file(), name
    baselines = pd.read_csv(results / "table_cnn_baselines.csv")
    untrained = ", untrained backbone (lower bound)"  # deep.baseline_weights=none: marked, not a result
    assert baselines["method"].tolist() == [f"DenseNet-121 ({m}){untrained}" for m in ("US", "MG", "MR")]
    assert baselines["auc"].between(0, 1).all() and (baselines["classifier"] == "Softmax").all()
    assert np.allclose(baselines["auc"], baselines["bundle_evaluate_auc"])  # bundle's evaluate agrees
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    assert set(manifest["split"]) == {"train", "test"}
    predictions = pd.read_csv(results / "predictions.csv", keep_default_na=False)
    test_ids = set(manifest.loc[manifest["split"] == "test", "patient_id"])
    assert set(predictions["patient_id"]) <= test_ids  # hold-out: only test patients are scored
    table = pd.read_csv(results / "table_radiomics.csv").set_index("method")
    for method, frame in predictions[predictions["family"] == "radiomics"].groupby("method"):
        legend_auc = roc_auc_score(frame["label"], frame["probability"])  # what plot_roc's legend shows
        assert legend_auc == pytest.approx(table.loc[method, "auc"]), method


def test_provenance_records_config_inputs_and_timings(finished_run, run_cohort):
    result, config = finished_run
    provenance = json.loads(result.provenance.read_text())
    assert provenance["config"]["analysis"]["protocol"] == "holdout"
    assert provenance["config"]["analysis"]["holdout"]["test_size"] == 0.2
    assert provenance["config"]["analysis"]["pca"] == {"deep": 32, "fused_radiomics": 57, "fused_deep": 51,
                                                       "fused": 108}
    assert provenance["config"]["deep"]["backbone"] == "efficientnet_lite0"
    assert provenance["seeds"]["analysis.seed"] == config.analysis.seed
    assert str(run_cohort) in provenance["input_hashes"] and len(provenance["input_hashes"]) > 40
    assert set(provenance["stages"]) == set(STAGES)
    assert all(stage["seconds"] >= 0 for stage in provenance["stages"].values())
    assert provenance["packages"]["monai"].startswith("1.6")
    assert provenance["host"]["cpu_count"] >= 1 and provenance["host"]["torch_threads"] >= 1


def test_rerun_skips_everything_and_force_reruns_one(finished_run, run_cohort):
    result, config = finished_run
    before = (result.out_dir / "results" / "predictions.csv").stat().st_mtime_ns
    again = run_pipeline(run_cohort, config, result.out_dir, progress=False)
    assert all(record.skipped for record in again.stages.records.values())
    assert (result.out_dir / "results" / "predictions.csv").stat().st_mtime_ns == before
    forced = run_pipeline(run_cohort, config, result.out_dir, force=["report"], progress=False)
    ran = {name for name, record in forced.stages.records.items() if not record.skipped}
    assert ran == {"report"}


def test_same_config_is_bit_identical_and_another_seed_differs(finished_run, run_cohort, fast_run, tmp_path):
    result, config = finished_run
    shutil.copytree(result.out_dir, tmp_path / "copy")
    rerun = run_pipeline(run_cohort, config, tmp_path / "copy", force=["analysis"], progress=False)
    for name in ("predictions.csv", "table_radiomics.csv", "table_deep.csv", "table_fusion.csv"):
        assert (rerun.out_dir / "results" / name).read_bytes() == \
            (result.out_dir / "results" / name).read_bytes(), name
    other = load_run_config(CONFIG_DIR / "paper.yaml", fast_run + ["seed=7"])
    changed = run_pipeline(run_cohort, other, tmp_path / "copy", progress=False)
    rerun_stages = {name for name, record in changed.stages.records.items() if not record.skipped}
    assert rerun_stages == {"split", "analysis", "report"}  # the manifest's split is kept: nothing else reruns
    assert (changed.out_dir / "results" / "predictions.csv").read_bytes() != \
        (result.out_dir / "results" / "predictions.csv").read_bytes()


def test_interrupted_run_resumes_without_corrupt_outputs(run_cohort, fast_run, tmp_path):
    out = tmp_path / "run"
    light = fast_run + ["families=[radiomics]", "deep.enabled=false", "deep.baselines=[]", "classifiers=[lr]"]
    command = [sys.executable, "-m", "mmdlr.cli.main", "-q", "run", "--manifest", str(run_cohort), "--out", str(out),
               *[item for override in light for item in ("--set", override)]]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + 300
    while not (out / "stages" / "crop.json").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # killed during radiomics extraction
    process.wait()
    assert (out / "stages" / "crop.json").exists() and not (out / "stages" / "analysis.json").exists()

    finished = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr[-2000:]
    ran = ("validate", "split", "crop", "radiomics", "analysis", "report")
    records = {name: json.loads((out / "stages" / f"{name}.json").read_text()) for name in ran}
    assert all(records[name]["outputs"] for name in ran)
    table = pd.read_csv(out / "results" / "table_radiomics.csv")
    assert table["auc"].between(0, 1).all() and len(table) >= 3
    for name in ("us", "mg", "mr"):
        assert len(pd.read_csv(out / "features" / f"radiomics_{name}.csv")) > 30


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium on this machine (.ci/run installs Debian's chromium)")


def test_report_renders_in_headless_chromium(finished_run, tmp_path):
    result, _ = finished_run
    html = result.report.read_text()
    assert html.count("data:image/png;base64,") >= 5  # ROC x3, calibration, decision curve, Grad-CAM
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([_chromium(), *flags, "--dump-dom", result.report.as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    for text in ("Table 2", "Table 3", "Table 4", "Table 1", "Ensemble", "Stacking", "TRIPOD", "Grad-CAM",
                 "DenseNet-121 (MG), untrained backbone (lower bound)", "are not results", "decision curve",
                 "Software", "kept by Mann", "40 patients (", "labels from histopathology", "Test AUC [95% CI]",
                 "legend: test AUC", "judged (p) by the network's head on the test split"):
        assert text in dom, text
    assert "Pooled OOF" not in dom and "Histopathology label" not in dom
    shot = tmp_path / "report.png"
    subprocess.run([_chromium(), *flags, "--window-size=1200,3000", f"--screenshot={shot}",
                    result.report.as_uri()], capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 20  # text, tables and figures, not a blank page
