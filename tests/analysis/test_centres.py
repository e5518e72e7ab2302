"""Centres: the manifest's center column, its way into the feature tables, Table 1 and leave-centre-out."""

from __future__ import annotations

import pandas as pd
import pytest

from mmdlr.analysis import config_from_dict, load_feature_set, run_analysis
from mmdlr.analysis.clinical import clinical_table
from mmdlr.analysis.features import FeatureTableError
from mmdlr.evaluate import Fold, leave_center_out_folds
from mmdlr.io.manifest import Manifest
from mmdlr.pipeline.config import run_config_from_dict
from mmdlr.pipeline.preflight import class_count_problems

from .synthetic_features import write_feature_tables

LCO_GRID = {"protocol": "leave_center_out", "classifiers": {"lr": {"C": [1.0]}}, "bootstrap": {"n": 200},
            "inner_folds": 2, "families": ["radiomics"], "fusion": {"early": False, "stacking": False},
            "parallel": {"n_jobs": 1}}


def with_centers(features, centers_of) -> None:
    """Give every feature table of ``features`` a center column: ``centers_of(patient number)``."""
    for path in features.glob("*.csv"):
        table = pd.read_csv(path, dtype={"patient_id": str})
        table.assign(center=table["patient_id"].str[1:].astype(int).map(centers_of)).to_csv(path, index=False)


def manifest_table(tmp_path, rows: list[dict]) -> Manifest:
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    return Manifest.from_csv(tmp_path / "manifest.csv")


def patient_rows(n: int, **columns) -> list[dict]:
    return [{"patient_id": f"P{i}", "label": i % 2, "us_image": f"i{i}.png", "us_mask": f"m{i}.png",
             **{name: values[i] for name, values in columns.items()}} for i in range(n)]


def test_one_fold_per_centre_and_no_centre_on_both_sides():
    labels = pd.Series([0, 1] * 6, index=[f"P{i:02d}" for i in range(12)])
    centers = pd.Series(list("ABC") * 4, index=labels.index)
    folds = leave_center_out_folds(labels, centers)
    assert [fold.name for fold in folds] == ["center_A", "center_B", "center_C"]
    for fold in folds:
        assert set(centers[list(fold.test)]) == {fold.name.removeprefix("center_")}
        assert set(centers[list(fold.train)]).isdisjoint(centers[list(fold.test)])
        assert sorted(fold.train + fold.test) == sorted(labels.index)


@pytest.mark.parametrize(("centers", "message"), [
    (None, "needs a center column"),
    (pd.Series("", index=["P0", "P1", "P2", "P3"]), "needs a center column"),
    (pd.Series(["A", "A", "A", "A"], index=["P0", "P1", "P2", "P3"]), "at least 2 centers, found only 'A'"),
    (pd.Series(["A", "", "B", "B"], index=["P0", "P1", "P2", "P3"]), "patient P1 has no center"),
    (pd.Series(["A", "A", "B", "A"], index=["P0", "P1", "P2", "P3"]), "with center A as test set the other centers "
                                                                      "hold only benign patients"),
])
def test_leave_center_out_refuses_in_one_line(centers, message):
    labels = pd.Series([0, 1, 0, 1], index=["P0", "P1", "P2", "P3"])
    with pytest.raises(ValueError, match=message):
        leave_center_out_folds(labels, centers)


def test_manifest_center_all_rows_or_none_one_problem_naming_rows(tmp_path):
    rows = patient_rows(8, center=["A", "", "B", "", "A", "B", "", "A"])
    problems = manifest_table(tmp_path, rows).structural_problems()
    assert problems == ["center is empty on row(s) 3 (P1), 5 (P3), 8 (P6) while other rows name one: give every "
                        "patient its center (site or scanner) or leave the whole column empty"]
    assert manifest_table(tmp_path, patient_rows(4, center=[""] * 4)).centers is None
    named = manifest_table(tmp_path, patient_rows(4, center=["A", "B", "A", "B"]))
    assert not named.structural_problems() and named.centers.to_dict() == {"P0": "A", "P1": "B", "P2": "A", "P3": "B"}
    assert "center" not in named.clinical_columns
    assert [case["center"] for case in named.cases("us")] == ["A", "B", "A", "B"]


def test_manifest_refuses_a_group_at_two_centres_and_centre_names_unfit_for_folders(tmp_path):
    rows = patient_rows(4, center=["A", "B", "../x", "B"], group=["g1", "g1", "", ""])
    problems = manifest_table(tmp_path, rows).structural_problems()
    assert problems == ["row 4: center '../x' names output folders: use no '/', '\\', control characters, '.' or '..'",
                        "group g1: its patients are at centers A, B; a group must belong to one center"]


def test_feature_set_centers_travel_from_the_tables_and_must_agree(tmp_path):
    features = write_feature_tables(tmp_path / "plain", n_patients=20, modalities=("us",), n_deep=4)
    assert load_feature_set(features).centers is None
    with_centers(features, lambda number: "AB"[number % 2])
    centers = load_feature_set(features).centers
    assert centers["P000"] == "A" and centers["P001"] == "B" and len(centers) == 20
    deep = pd.read_csv(features / "deep_us.csv", dtype={"patient_id": str})
    deep.loc[0, "center"] = "C"
    deep.to_csv(features / "deep_us.csv", index=False)
    with pytest.raises(FeatureTableError, match=f"patient {deep.loc[0, 'patient_id']}: center differs between"):
        load_feature_set(features)


def test_clinical_table_has_a_center_row(tmp_path):
    manifest = manifest_table(tmp_path, patient_rows(8, center=list("ABAB" * 2)))
    table = clinical_table(manifest, Fold("holdout", ("P0", "P1", "P2", "P3", "P4", "P5"), ("P6", "P7")))
    center = table[table["variable"] == "center"]
    assert center["level"].tolist() == ["", "A", "B"] and center["test_used"].iloc[0] == "chi-square"
    assert center["train"].tolist()[1:] == ["3 (50.0%)", "3 (50.0%)"]


def test_leave_center_out_run_tests_each_centre_on_models_of_the_others(tmp_path):
    features = write_feature_tables(tmp_path / "features", n_patients=60, modalities=("us",), n_deep=4, seed=2)
    with_centers(features, lambda number: "ABC"[number % 3])
    result = run_analysis(features, tmp_path / "out", config_from_dict(LCO_GRID), progress=False)
    predictions = result.predictions
    centers = load_feature_set(features).centers
    assert sorted(predictions["fold"].unique()) == ["center_A", "center_B", "center_C"]
    for fold, tested in predictions.groupby("fold"):
        assert set(centers[tested["patient_id"]]) == {fold.removeprefix("center_")}
    assert (predictions.groupby(["method", "patient_id"]).size() == 1).all()  # every patient tested once
    table = result.tables["radiomics"]
    assert (table["n_folds"] == 3).all() and (table["n_patients"] == 60).all()
    assert "mean of 3 outer folds (1 x 3-fold)" in table["ci_method"].iloc[0]
    per_center = pd.read_csv(result.results_dir / "table_centers.csv", keep_default_na=False)
    assert per_center[per_center["method"] == "US"]["center"].tolist() == ["A", "B", "C"]
    assert per_center["n_patients"].sum() == 60 * len(table) and per_center["auc"].between(0, 1).all()
    index = pd.read_csv(result.results_dir / "models" / "index.csv")
    assert index["trained_on"].str.startswith("all patients (n=60)").all()


def test_preflight_refuses_leave_center_out_without_centres_or_with_a_thin_training_side(tmp_path):
    config = run_config_from_dict({"analysis": {"protocol": "leave_center_out"}, "deep": {"enabled": False}})
    plain = manifest_table(tmp_path, patient_rows(40))
    assert class_count_problems(plain, config)[0].startswith("protocol leave_center_out needs a center column")
    thin = manifest_table(tmp_path, patient_rows(40, center=["A"] * 30 + ["B"] * 10))
    assert class_count_problems(thin, config) == [
        "too few patients: with center A as test set, leave_center_out trains on 5 benign and 5 malignant; it "
        "needs 8 of each (3-fold out-of-fold predictions (fusion, Youden threshold), 3-fold model choice "
        "(inner_folds), 3-fold LASSO penalty): add patients or use fewer inner_folds"]
    even = manifest_table(tmp_path, patient_rows(40, center=["A", "A", "B", "B"] * 10))
    assert class_count_problems(even, config) == []
