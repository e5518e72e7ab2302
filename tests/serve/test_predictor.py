"""The Predictor reproduces the run: same ROIs, radiomics and CNN outputs, same saved-model probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmdlr.serve import MissingModalityError, UnknownModelError

from .cases import case_files, present


def test_test_patients_get_the_runs_own_hold_out_probabilities(predictor, run_dir, cohort):
    """Hold-out: the saved models are the ones that scored the test patients in results/predictions.csv."""
    scored = pd.read_csv(run_dir / "results" / "predictions.csv", dtype={"patient_id": str})
    names = {(m.bundle.family, m.bundle.method): name for name, m in predictor.models.items()}
    scored["model"] = [names[key] for key in zip(scored["family"], scored["method"])]
    cnn = {m: pd.read_csv(run_dir / "features" / f"deep_{m}.csv", dtype={"patient_id": str},
                          usecols=["patient_id", "head_prob_malignant"]).set_index("patient_id")["head_prob_malignant"]
           for m in ("us", "mg", "mr")}
    test_rows = cohort[cohort["split"] == "test"]
    compared = 0
    for _, row in test_rows.iterrows():
        predictions = {p.model: p for p in predictor.predict(case_files(row), patient_id=row["patient_id"])}
        expected = scored[scored["patient_id"] == row["patient_id"]]
        assert set(expected["model"]) <= set(predictions)
        for _, truth in expected.iterrows():
            served = predictions[truth["model"]]
            # radiomics come from the same ROI code and are exact; CNN features differ in the last float32
            # bits (batch of one here, batches in the run), which moves probabilities by far less than 1e-3
            tolerance = 1e-12 if truth["family"] == "radiomics" else 1e-3
            assert served.probability == pytest.approx(truth["probability"], abs=tolerance), truth["model"]
            compared += 1
        for modality in present(row):
            deep = predictions[f"deep_{modality}"].per_modality[modality]
            assert deep["cnn_probability"] == pytest.approx(cnn[modality][row["patient_id"]], abs=1e-5)
    assert compared >= 8 * len(test_rows)


def test_late_fusion_answers_with_the_modalities_given(predictor, cohort):
    row = cohort[cohort["mr_image"] != ""].iloc[0]
    [prediction] = predictor.predict(case_files(row, ["mr"]), ["fusion_stacking"])
    assert prediction.modalities_used == ["mr"]
    assert set(prediction.per_modality["mr"]["base_probabilities"]) == {"radiomics_mr", "deep_mr"}
    assert 0 <= prediction.probability <= 1


def test_models_that_need_a_missing_modality_name_it(predictor, cohort):
    row = cohort[cohort["us_image"] != ""].iloc[0]
    with pytest.raises(MissingModalityError, match="deep_mg_us needs modality mg") as caught:
        predictor.predict(case_files(row, ["us"]), ["deep_mg_us"], patient_id="P-new")
    assert caught.value.missing == ["mg"] and "patient P-new" in str(caught.value)
    with pytest.raises(UnknownModelError, match="unknown model 'resnet'"):
        predictor.predict(case_files(row, ["us"]), ["resnet"])
    usable = {p.model for p in predictor.predict(case_files(row, ["us"]))}
    assert usable == {"radiomics_us", "deep_us", "radiomics_ensemble", "radiomics_stacking", "deep_ensemble",
                      "deep_stacking", "fusion_ensemble", "fusion_stacking"}


def test_gradcam_overlay_covers_the_roi(predictor, cohort):
    row = cohort[cohort["mr_image"] != ""].iloc[0]
    files = case_files(row, ["mr"])
    overlay = predictor.explain("deep_mr", "mr", files)
    [prediction] = predictor.predict(files, ["deep_mr"])
    assert overlay.dtype == np.uint8 and overlay.shape == (*prediction.per_modality["mr"]["roi_shape"], 3)
    with pytest.raises(ValueError, match="reads no deep features of modality mr"):
        predictor.explain("radiomics_mr", "mr", files)
