"""No value from data reaches MONAI's config parser as an expression, reference or macro.

Each hostile value below would create the file ``PWNED`` in the working folder if it were evaluated.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mmdlr.analysis.config import ConfigError
from mmdlr.cli.main import main
from mmdlr.paths import CONFIG_DIR
from mmdlr.pipeline.bundle import bundle_overrides, run_bundle_config
from mmdlr.pipeline.config import load_run_config, run_config_from_dict

HOSTILE = "$open('PWNED','w').close() or 'x'"
TINY_RUN = ["deep.backbone=efficientnet_lite0", "deep.weights=none", "deep.max_epochs=1", "deep.spatial_size=[32,32]",
            "deep.batch_size=8", "deep.baselines=[]", "classifiers=[lr]", "bootstrap.n=100", "inner_folds=2",
            "fusion={early: false, ensemble: false, stacking: false}", "report.gradcam_cases=2"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    assert not (tmp_path / "PWNED").exists(), "a hostile value was evaluated"


def _set(overrides: list[str]) -> list[str]:
    return [part for override in overrides for part in ("--set", override)]


def _us_only(small_cohort) -> pd.DataFrame:
    """The cohort's ultrasound columns with absolute paths (the manifest is written elsewhere)."""
    table = pd.read_csv(small_cohort, dtype=str, keep_default_na=False)
    table = table[table["us_image"] != ""].reset_index(drop=True)
    for column in ("us_image", "us_mask"):
        table[column] = [str(small_cohort.parent / cell) for cell in table[column]]
    return table[["patient_id", "label", "us_image", "us_mask"]]


def test_hostile_modality_column_is_refused_naming_it(small_cohort, workdir, capsys):
    table = _us_only(small_cohort).rename(columns={"us_image": f"{HOSTILE}_image",
                                                            "us_mask": f"{HOSTILE}_mask"})
    table.to_csv(workdir / "manifest.csv", index=False)
    assert main(["-q", "validate", str(workdir / "manifest.csv")]) == 1
    assert f"column {HOSTILE + '_image'!r}: modality name" in capsys.readouterr().err
    assert main(["-q", "run", "--manifest", str(workdir / "manifest.csv"), "--out", str(workdir / "run"),
                 *_set(TINY_RUN)]) == 2
    assert "modality name" in capsys.readouterr().err


@pytest.mark.slow
def test_hostile_patient_ids_and_groups_stay_data_through_a_whole_run(small_cohort, workdir):
    """Patient ids reach Grad-CAM's case list and groups every split: both as data, never as config text."""
    from mmdlr.pipeline.run import run_pipeline

    table = _us_only(small_cohort)
    table["patient_id"] = [f"$open('PWNED','w').close() or '{pid}'" for pid in table["patient_id"]]
    table["group"] = [f"@group{index // 2}" if index % 3 else f"%group{index}" for index in range(len(table))]
    table.to_csv(workdir / "manifest.csv", index=False)
    config = load_run_config(CONFIG_DIR / "paper.yaml", TINY_RUN)
    result = run_pipeline(workdir / "manifest.csv", config, workdir / "run", progress=False)
    cases = pd.read_csv(result.out_dir / "gradcam" / "us" / "cases.csv", dtype=str, keep_default_na=False)
    assert len(cases) >= 2 and all(pid.startswith("$open(") for pid in cases["patient_id"])
    for pid in cases["patient_id"]:
        assert (result.out_dir / "gradcam" / "us" / f"{pid}_gradcam.png").is_file()


@pytest.mark.parametrize("override", [f"deep.weights={HOSTILE}", "deep.backbone=@network_def",
                                      "deep.backbone='@network_def'",
                                      "radiomics.params_2d=%configs/x.json#y", f"analysis.modalities=['{HOSTILE}']"])
def test_hostile_set_values_are_refused_at_load(override, small_cohort, workdir, capsys):
    manifest = workdir / "manifest.csv"
    _us_only(small_cohort).to_csv(manifest, index=False)
    assert main(["-q", "run", "--manifest", str(manifest), "--out", str(workdir / "run"), "--set", override]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (workdir / "run" / "stages").exists()  # refused before any stage ran


def test_hostile_provenance_is_refused_when_a_run_folder_is_served(small_cohort, workdir, capsys):
    run = workdir / "run"
    run.mkdir()
    (run / "provenance.json").write_text(json.dumps({"config": {"deep": {"backbone": HOSTILE}}}))
    manifest = workdir / "manifest.csv"
    _us_only(small_cohort).to_csv(manifest, index=False)
    assert main(["-q", "predict", "--model-dir", str(run), "--manifest", str(manifest),
                 "--out", str(workdir / "p.csv")]) == 2
    assert "deep.backbone" in capsys.readouterr().err


@pytest.mark.parametrize("value", [HOSTILE, "@network", "%metadata.json#version", ["ok", HOSTILE], {"a": "$x"}])
def test_bundle_overrides_refuse_strings_monai_would_parse(value):
    config = run_config_from_dict({})
    with pytest.raises(ConfigError, match="MONAI's config parser would evaluate"):
        bundle_overrides(config, "out", "us", extra=value)
    with pytest.raises(ConfigError):
        run_bundle_config("inference", modality=value)
    with pytest.raises(ConfigError):
        bundle_overrides(config, "out", HOSTILE)


@pytest.mark.parametrize("values, message", [
    ({"deep": {"backbone": "vgg99"}}, "deep.backbone must be one of"),
    ({"deep": {"mode": "train_everything"}}, "deep.mode must be one of"),
    ({"deep": {"baselines": ["resnet101", "alexnet"]}}, "unknown backbone"),
    ({"deep": {"max_epochs": "ten"}}, "deep.max_epochs must be int"),
    ({"deep": {"enabled": "yes"}}, "deep.enabled must be bool"),
    ({"roi": {"margin_unit": "mm"}}, "roi.margin_unit must be one of"),
    ({"roi": {"label_value": "one"}}, "roi.label_value"),
    ({"modalities": ["US"]}, "modality name 'US'"),
    ({"classifiers": ["lr", "gpt"]}, "unknown classifier"),
])
def test_settings_with_fixed_values_are_checked_at_load(values, message):
    with pytest.raises(ConfigError, match=message):
        run_config_from_dict(values)


def test_patient_ids_that_would_name_files_outside_their_folder_are_refused(small_cohort, workdir, capsys):
    table = _us_only(small_cohort)
    table.loc[0, "patient_id"] = "../../escaped"
    table.to_csv(workdir / "manifest.csv", index=False)
    assert main(["-q", "validate", str(workdir / "manifest.csv")]) == 1
    assert "patient_id '../../escaped' names output files" in capsys.readouterr().err
