"""Every sentence of the report is true for its run: label source and unit from the config, counts from the
manifest, AUC columns named by what they hold, Grad-CAM cases judged out of sample or labelled in-sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmdlr.analysis.config import ConfigError
from mmdlr.io.manifest import Manifest
from mmdlr.pipeline.config import run_config_from_dict
from mmdlr.pipeline.run import TEST_SPLIT, _out_of_fold, gradcam_cases
from mmdlr.report.html import _result_table
from mmdlr.report.protocol import protocol_items


def _manifest(labels: list[int]) -> Manifest:
    table = pd.DataFrame({"patient_id": [f"img{i}" for i in range(len(labels))], "label": labels,
                          "us_image": "a.png", "us_mask": "a_mask.png"})
    return Manifest(Path("/data/busi.csv"), table, ["us"])


def test_methods_text_states_label_source_unit_and_class_counts():
    busi = run_config_from_dict({"report": {"label_source": "the dataset's benign/malignant folders",
                                            "unit": "image"}})
    items = protocol_items(busi, _manifest([0, 0, 1, 0, 1]))
    assert items["Source of data"].startswith("5 images (2 malignant, 3 benign) from busi.csv")
    assert items["Outcome"] == "Benign (0) vs malignant (1), labels from the dataset's benign/malignant folders."
    default = protocol_items(run_config_from_dict({}), _manifest([1, 0]))
    assert default["Source of data"].startswith("2 patients (1 malignant, 1 benign)")
    assert "histopathology" in default["Outcome"] and "Histopathology" not in default["Outcome"]


def test_methods_text_says_how_the_inner_cv_search_screened_its_candidates():
    def model_building(**analysis):
        return protocol_items(run_config_from_dict(analysis), _manifest([1, 0]))["Model building"]

    screened = model_building()  # the seven classifiers
    assert ("; tree ensembles were first scored with 12.5% of their trees and the 3 best within 0.02 AUC of the best "
            "first score scored in full; SVMs were scored before Platt scaling") in screened
    assert "inner CV (ROC AUC) on training data only. Fusion" in model_building(search={"screen_margin": None})
    assert "inner CV (ROC AUC) on training data only. Fusion" in model_building(classifiers=["lr", "knn"])
    only_svm = model_building(classifiers=["lr", "svm"])
    assert "tree ensembles" not in only_svm and "; SVMs were scored before Platt scaling" in only_svm


@pytest.mark.parametrize(("report", "message"), [({"unit": "lesion"}, "report.unit must be one of patient, image"),
                                                 ({"label_source": " "}, "report.label_source must name")])
def test_report_settings_are_validated(report, message):
    with pytest.raises(ConfigError, match=message):
        run_config_from_dict({"report": report})


def test_nested_cv_table_shows_fold_mean_and_pooled_auc_under_their_own_names():
    metrics = {f"{m}{end}": [value] for m in ("accuracy", "auc", "sensitivity", "specificity")
               for end, value in (("", 0.986), ("_low", 0.95), ("_high", 1.0))}
    table = pd.DataFrame({"method": ["US"], "n_patients": [40], **metrics, "classifier": ["SVM"],
                          "pooled_auc": [0.99], "pooled_auc_low": [0.97], "pooled_auc_high": [1.0]})
    nested, _ = _result_table(table, "nested_cv")
    assert "Fold-mean AUC [95% CI]" in nested and "Pooled OOF AUC [95% CI]" in nested
    assert "0.990 [0.970-1.000]" in nested  # the number the nested-CV ROC legend shows
    holdout, _ = _result_table(table.drop(columns=["pooled_auc", "pooled_auc_low", "pooled_auc_high"]), "holdout")
    assert "Test AUC [95% CI]" in holdout and "Pooled OOF" not in holdout


def _deep_table(split: str) -> pd.DataFrame:
    return pd.DataFrame({"patient_id": [f"p{i}" for i in range(6)], "label": [1, 1, 1, 0, 0, 0],
                         "split": split, "head_prob_malignant": [0.99, 0.9, 0.6, 0.05, 0.4, 0.97]})


def test_gradcam_cases_are_judged_out_of_sample_or_labelled_in_sample():
    holdout = _deep_table("train").assign(split=["train", "test", "test", "train", "test", "test"])
    cases = gradcam_cases(holdout, 1)
    assert cases["patient_id"].tolist() == ["p1", "p5"]  # test patients only: p0 (0.99) trained the head
    assert (cases["probability_source"] == "network head, test split").all()

    out_of_fold = pd.DataFrame({"patient_id": [f"p{i}" for i in range(6)],
                                "probability": [0.2, 0.8, 0.7, 0.1, 0.3, 0.45]})
    cases = gradcam_cases(_deep_table(""), 1, out_of_fold)
    assert cases["patient_id"].tolist() == ["p3", "p0"]  # chosen and judged by the out-of-fold probability
    assert cases["correct"].tolist() == [True, False]
    np.testing.assert_allclose(cases["head_prob_malignant"], [0.05, 0.99])  # the drawn network's own view
    assert (cases["probability_source"] == "out-of-fold (analysis)").all()

    cases = gradcam_cases(_deep_table(""), 1)
    assert cases["probability_source"].str.contains("in-sample").all()


def test_out_of_fold_probabilities_come_from_the_deep_single_modality_row(tmp_path):
    predictions = pd.DataFrame({"family": ["deep", "deep", "deep", "deep", "radiomics"],
                                "method": ["MR", "MR", "MR", "US+MR", "MR"], "patient_id": ["007", "007", "8", "8", "8"],
                                "label": [1, 1, 0, 0, 0], "probability": [0.6, 0.8, 0.3, 0.9, 0.9]})
    predictions.to_csv(tmp_path / "predictions.csv", index=False)
    out_of_fold = _out_of_fold(tmp_path / "predictions.csv", "mr").set_index("patient_id")["probability"]
    assert out_of_fold.to_dict() == pytest.approx({"007": 0.7, "8": 0.3})  # repeats averaged, ids kept as text
