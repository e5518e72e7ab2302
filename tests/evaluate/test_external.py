"""`mmdlr evaluate`: the unpaired DeLong test against a bootstrap; the run's own test split evaluated as an
external cohort reproduces the run's tables; shift warnings reach evaluation.html; bad input is one line."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from mmdlr.cli.main import main
from mmdlr.evaluate import BOOTSTRAP_STATISTICS, delong_unpaired_test

TABLE_METRICS = ["accuracy", "accuracy_low", "accuracy_high", "auc", "auc_low", "auc_high", "sensitivity",
                 "specificity", "brier", "cal_intercept", "cal_slope", "threshold"]


def _cohort(rng, n: int, separation: float) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.permutation(np.r_[np.ones(n // 2, int), np.zeros(n - n // 2, int)])
    return labels, rng.normal(separation * labels, 1.0)


def _bootstrap_auc_variance(rng, labels: np.ndarray, scores: np.ndarray, n_boot: int = 20000) -> float:
    """Variance of the AUC over class-stratified resamples (multinomial weights per class)."""
    weights = np.zeros((n_boot, len(labels)))
    for label in (0, 1):
        members = np.flatnonzero(labels == label)
        weights[:, members] = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), n_boot)
    return float(BOOTSTRAP_STATISTICS["auc"](labels, scores, weights).var())


def test_unpaired_delong_matches_a_bootstrap_of_two_independent_cohorts():
    rng = np.random.default_rng(3)
    (labels_a, scores_a), (labels_b, scores_b) = _cohort(rng, 60, 1.5), _cohort(rng, 80, 0.8)
    z, p = delong_unpaired_test(labels_a, scores_a, labels_b, scores_b)
    difference = BOOTSTRAP_STATISTICS["auc"](labels_a, scores_a, np.ones((1, 60)))[0] - \
        BOOTSTRAP_STATISTICS["auc"](labels_b, scores_b, np.ones((1, 80)))[0]
    bootstrap_z = difference / np.sqrt(_bootstrap_auc_variance(rng, labels_a, scores_a)
                                       + _bootstrap_auc_variance(rng, labels_b, scores_b))
    assert z == pytest.approx(bootstrap_z, rel=0.05)
    assert 0.01 < p < 0.2  # AUC 0.85 against 0.70 on 60 and 80 patients: suggestive, not conclusive
    assert delong_unpaired_test(labels_b, scores_b, labels_a, scores_a) == pytest.approx((-z, p))
    assert delong_unpaired_test(labels_a, scores_a, labels_a, scores_a) == (0.0, 1.0)


@pytest.fixture(scope="module")
def cohort(run_dir) -> pd.DataFrame:
    return pd.read_csv(run_dir / "manifest.csv", dtype=str, keep_default_na=False)


@pytest.fixture
def test_split_evaluation(run_dir, cohort, shared_predictor, tmp_path_factory):
    """`mmdlr evaluate` of the run's own hold-out test patients, as an external cohort."""
    folder = tmp_path_factory.mktemp("external")
    cohort[cohort["split"] == "test"].drop(columns=["split", "group"]).to_csv(folder / "test.csv", index=False)
    assert main(["-q", "evaluate", "--model-dir", str(run_dir), "--manifest", str(folder / "test.csv"),
                 "--out", str(folder / "eval")]) == 0
    return folder / "eval"


def test_the_runs_test_split_reproduces_its_tables_and_internal_equals_external(run_dir, test_split_evaluation):
    compared = 0
    # radiomics are recomputed exactly; the served CNN's features of one image differ from the run's batched ones
    # in the last float32 digits, which moves calibration estimates by ~1e-4
    for name, tolerance in {"radiomics": 1e-9, "deep": 1e-3, "fusion": 1e-3}.items():
        internal = pd.read_csv(run_dir / "results" / f"table_{name}.csv").set_index("method")
        external = pd.read_csv(test_split_evaluation / f"table_{name}.csv").set_index("method")
        assert list(external.columns) == list(internal.columns)
        same = [method for method in external.index if internal.at[method, "n_patients"] ==
                external.at[method, "n_patients"]]
        assert same, name
        pd.testing.assert_frame_equal(external.loc[same, TABLE_METRICS], internal.loc[same, TABLE_METRICS],
                                      atol=tolerance, rtol=0)
        compared += len(same)
    comparisons = pd.read_csv(test_split_evaluation / "comparisons.csv")
    equal = comparisons[comparisons["n_internal"] == comparisons["n_external"]].dropna(subset=["delong_p"])
    assert len(equal) >= compared // 2
    assert np.allclose(equal["auc_internal"], equal["auc_external"]) and (equal["delong_p"] == 1).all()
    assert pd.read_csv(test_split_evaluation / "shift_warnings.csv").empty
    page = (test_split_evaluation / "evaluation.html").read_text()
    assert "Internal and external performance" in page and ">external<" in page and "AUC [95% CI]" in page
    assert "No case lies outside the training distribution" in page
    for figure in ("calibration.png", "decision_curve.png", "roc_radiomics.png"):
        assert (test_split_evaluation / figure).stat().st_size > 0


def test_dicom_mammograms_as_ultrasound_are_listed_in_the_page(run_dir, cohort, shared_predictor, tmp_path):
    shifted = cohort[(cohort["mg_image"] != "") & (cohort["us_image"] != "")].groupby("label").head(3)
    shifted = shifted.assign(us_image=shifted["mg_image"], us_mask=shifted["mg_mask"])
    shifted[["patient_id", "label", "us_image", "us_mask"]].to_csv(tmp_path / "mg_as_us.csv", index=False)
    assert main(["-q", "evaluate", "--model-dir", str(run_dir), "--manifest", str(tmp_path / "mg_as_us.csv"),
                 "--out", str(tmp_path / "eval")]) == 0
    warnings = pd.read_csv(tmp_path / "eval" / "shift_warnings.csv", dtype=str)
    assert sorted(warnings["patient_id"]) == sorted(shifted["patient_id"]) and set(warnings["modality"]) == {"us"}
    page = (tmp_path / "eval" / "evaluation.html").read_text()
    assert page.count("-bit DICOM while the model was trained on 8-bit PNG") == len(shifted)
    numbers = [int(number) for number in re.findall(r"<caption><b>Table (\d+)\.</b>", page)]
    assert numbers == list(range(1, len(numbers) + 1)) and page.index("Table 1.") > page.index("id='sec-shift'")


def _error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_input_is_one_line_and_writes_nothing(run_dir, cohort, shared_predictor, tmp_path, capsys):
    out = tmp_path / "eval"
    evaluate = ["-q", "evaluate", "--model-dir", str(run_dir), "--out", str(out), "--manifest"]
    unlabelled = cohort.head(4).assign(label=["benign", "", "malignant", "benign"])
    unlabelled.to_csv(tmp_path / "unlabelled.csv", index=False)
    assert main([*evaluate, str(tmp_path / "unlabelled.csv")]) == 2
    assert f"patient {cohort['patient_id'].iloc[1]}: label '' is not benign/malignant" in _error(capsys)
    renamed = cohort.head(4).rename(columns={"us_image": "ct_image", "us_mask": "ct_mask", "mg_image": "pet_image",
                                             "mg_mask": "pet_mask", "mr_image": "xr_image", "mr_mask": "xr_mask"})
    renamed.to_csv(tmp_path / "renamed.csv", index=False)
    assert main([*evaluate, str(tmp_path / "renamed.csv")]) == 2
    assert "no column pair <mod>_image, <mod>_mask for the run's modalities" in _error(capsys)
    unsaved = tmp_path / "unsaved_run"
    unsaved.mkdir()
    (unsaved / "provenance.json").write_text((run_dir / "provenance.json").read_text())
    (unsaved / "manifest.csv").write_text((run_dir / "manifest.csv").read_text())
    assert main(["-q", "evaluate", "--model-dir", str(unsaved), "--out", str(out), "--manifest",
                 str(tmp_path / "unlabelled.csv")]) == 2
    assert "the run saved no models" in _error(capsys)
    assert not out.exists() and not list(tmp_path.glob(".eval*"))
    assert main(["-q", "evaluate", "--model-dir", str(run_dir), "--out", str(run_dir), "--manifest",
                 str(tmp_path / "renamed.csv")]) == 2
    assert f"--out {run_dir} exists and is not an earlier `mmdlr evaluate` folder" in _error(capsys)
