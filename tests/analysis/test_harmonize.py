"""ComBat harmonisation: against neuroHarmonize, removal of a centre effect, fitted in the training fold only,
a centre never seen in training, the config and the estimator checks."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import check_estimator

from mmdlr.analysis.config import ConfigError, config_from_dict
from mmdlr.analysis.features import FeatureTableError, load_feature_set
from mmdlr.analysis.fold import fit_row
from mmdlr.analysis.grid import plan_rows
from mmdlr.evaluate import Fold
from mmdlr.select.harmonize import ComBatHarmonizer, assign_centers

from .synthetic_features import write_feature_tables

REFERENCE = Path(__file__).parent / "data" / "combat_reference.json"  # written by data/combat_reference.py
CONFIG = {"protocol": "nested_cv", "nested_cv": {"outer_folds": 2, "repeats": 1}, "inner_folds": 2,
          "classifiers": {"lr": {"C": [1.0]}}, "families": ["radiomics", "deep"], "bootstrap": {"n": 100},
          "fusion": {"early": False, "ensemble": False, "stacking": False}, "parallel": {"n_jobs": 1},
          "pca": {"deep": 4}, "harmonize": {"combat": True}}
FITTED = ("centers_", "harmonized_", "stand_mean_", "var_pooled_", "gamma_star_", "delta_star_")


def test_harmonizer_passes_the_estimator_checks():
    check_estimator(ComBatHarmonizer())


def _with_centers(values, centers) -> np.ndarray:
    return np.column_stack([np.asarray(centers, dtype=object), values])


def test_harmonizer_matches_neuroharmonize():
    """neuroHarmonize 2.5.2's own output (harmonizationLearn, harmonizationApply and its new-site path)."""
    reference = {name: np.asarray(value) for name, value in json.loads(REFERENCE.read_text()).items()}
    train, sites = reference["train"], reference["train_sites"]
    harmonizer = ComBatHarmonizer(center_column=0).fit(_with_centers(train, sites))
    for part in ("train", "seen", "new"):
        harmonized = harmonizer.transform(_with_centers(reference[part], reference[f"{part}_sites"]))
        np.testing.assert_allclose(harmonized, reference[f"{part}_harmonized"], rtol=1e-10, atol=1e-10)

    # leave-centre-out with two centres: fitted on A alone (side data by patient id), applied to new site D
    patients = [f"p{i}" for i in range(len(train) + len(reference["new"]))]
    centers = [*sites, *reference["new_sites"]]
    one_site = ComBatHarmonizer(centers, patients).fit(pd.DataFrame(train, index=patients[:len(train)])[sites == "A"])
    np.testing.assert_allclose(one_site.transform(pd.DataFrame(train, index=patients[:len(train)])[sites == "A"]),
                               reference["one_site_harmonized"], rtol=1e-10, atol=1e-10)
    new = pd.DataFrame(reference["new"], index=patients[len(train):])[reference["new_sites"] == "D"]
    np.testing.assert_allclose(one_site.transform(new), reference["d_harmonized"], rtol=1e-10, atol=1e-10)


def _two_centres(n: int = 80, seed: int = 0):
    """Features ``label + noise``, half of each centre malignant; centre B's scanner multiplies them by 3 and
    adds 5."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    centers = np.where(np.arange(n) < n // 2, "A", "B")
    values = labels[:, None] + rng.normal(size=(n, 6))
    values[centers == "B"] = 3 * values[centers == "B"] + 5
    return values, centers, labels


def _centre_gap(values, centers) -> tuple[np.ndarray, np.ndarray]:
    """Per feature: |mean B - mean A| in pooled SDs, and log(SD B / SD A)."""
    a, b = values[centers == "A"], values[centers == "B"]
    return np.abs(b.mean(0) - a.mean(0)) / values.std(0), np.abs(np.log(b.std(0) / a.std(0)))


def test_harmonizer_removes_a_centre_shift_and_scale_and_keeps_the_label_signal():
    """Without empirical Bayes each centre's mean and SD are matched exactly; with it (the default) they are
    shrunk towards the average over features, so small gaps remain."""
    values, centers, labels = _two_centres()
    shift, scale = _centre_gap(values, centers)
    assert (shift > 1).all() and (scale > np.log(2.5)).all()
    rows = _with_centers(values, centers)
    shift, scale = _centre_gap(ComBatHarmonizer(center_column=0, empirical_bayes=False).fit_transform(rows), centers)
    assert (shift < 1e-12).all() and (scale < 1e-12).all()
    harmonized = ComBatHarmonizer(center_column=0).fit_transform(rows)
    shift, scale = _centre_gap(harmonized, centers)
    assert (shift < 0.3).all() and (scale < 0.15).all()
    for center in ("A", "B"):  # within each centre the classes still differ
        rows = centers == center
        gap = harmonized[rows & (labels == 1)].mean(0) - harmonized[rows & (labels == 0)].mean(0)
        assert (gap > 0.5 * harmonized[rows].std(0)).all()


def test_a_centre_never_seen_in_training_is_estimated_from_its_own_rows_or_refused():
    values, centers, _ = _two_centres()
    train, test = centers == "A", centers == "B"
    harmonizer = ComBatHarmonizer(center_column=0).fit(_with_centers(values[train], centers[train]))
    mapped = harmonizer.transform(_with_centers(values[test], centers[test]))
    def gap_to_a(harmonized):  # |mean shift| in SDs of centre A, |log SD ratio|
        return (np.abs(harmonized.mean(0) - values[train].mean(0)) / values[train].std(0),
                np.abs(np.log(harmonized.std(0) / values[train].std(0))))

    shift, scale = gap_to_a(values[test])
    assert (shift > 3).all() and (scale > 1).all()
    shift, scale = gap_to_a(mapped)
    assert (shift < 0.2).all() and (scale < 0.2).all()  # empirical Bayes leaves a little
    # the new centre's estimate uses its own rows only: training-centre rows beside them change nothing
    together = harmonizer.transform(_with_centers(values, centers))
    np.testing.assert_allclose(together[test], mapped)
    np.testing.assert_allclose(together[train], harmonizer.transform(_with_centers(values[train], centers[train])))
    with pytest.raises(ValueError, match="at least 2 patients of each centre to estimate a centre not seen"):
        harmonizer.transform(_with_centers(values[test][:1], centers[test][:1]))
    refusing = ComBatHarmonizer(center_column=0, new_centers="refuse").fit(_with_centers(values[train], centers[train]))
    with pytest.raises(ValueError, match="centre 'B' was not among the training centres"):
        refusing.transform(_with_centers(values[test], centers[test]))


def test_a_new_centre_keeps_its_spread_when_one_feature_is_rescaled_enormously():
    """A new scanner rescales an energy-like feature by 1e5 and leaves the others: every feature of the new
    centre still gets the training centre's SD (an empirical Bayes prior pooled over these scale ratios would
    inflate every feature's delta and flatten them all)."""
    values, centers, _ = _two_centres()
    values[centers == "B"] = (values[centers == "B"] - 5) / 3  # B like A, but for feature 0
    values[centers == "B", 0] *= 1e5
    train, test = centers == "A", centers == "B"
    harmonizer = ComBatHarmonizer(center_column=0).fit(_with_centers(values[train], centers[train]))
    mapped = harmonizer.transform(_with_centers(values[test], centers[test]))
    np.testing.assert_allclose(mapped.std(0) / values[train].std(0), 1, atol=0.02)


def test_side_data_needs_patient_ids_and_a_centre_for_each():
    values, centers, _ = _two_centres(20)
    ids = [f"P{i}" for i in range(20)]
    harmonizer = ComBatHarmonizer(centers, ids)
    with pytest.raises(ValueError, match="DataFrame indexed by patient id"):
        harmonizer.fit(values)
    harmonizer.fit(pd.DataFrame(values, index=ids))
    with pytest.raises(ValueError, match="patient X1 has no centre"):
        harmonizer.transform(pd.DataFrame(values[:2], index=["P0", "X1"]))


def _feature_set(tmp_path: Path):
    """60 patients, US radiomics and deep features; centre B's features are 2x + 3."""
    write_feature_tables(tmp_path, n_patients=60, modalities=("us",), n_radiomics=6, n_deep=8)
    features = load_feature_set(tmp_path)
    centers = pd.Series(np.where(np.arange(60) % 2, "B", "A"), index=features.labels.index)
    frame = features.frame.copy()
    frame[centers == "B"] = 2 * frame[centers == "B"] + 3
    return dataclasses.replace(features, frame=frame, centers=centers)


def _combat_steps(model) -> dict[str, ComBatHarmonizer]:
    steps = model.best_estimator_.named_steps
    if "combat" in steps:
        return {"radiomics": steps["combat"]}
    return {"deep": steps["blocks"].named_transformers_["deep_us"].named_steps["combat"]}


def test_combat_is_fitted_on_the_training_fold_only(tmp_path):
    """Changing the test patients' features and flipping their labels leaves every fitted ComBat parameter
    as it was; changing one training patient's features does not."""
    features = _feature_set(tmp_path)
    config = config_from_dict(CONFIG)
    rows, _ = plan_rows(features, config)
    assert [row.family for row in rows] == ["radiomics", "deep"]
    patients = features.labels.index
    fold = Fold("0", tuple(patients[:40]), tuple(patients[40:]))
    test = features.frame.index.isin(fold.test)
    rng = np.random.default_rng(1)
    frame = features.frame.copy()
    frame[test] = frame[test] * 5 + rng.normal(size=(test.sum(), frame.shape[1]))
    changed_test = dataclasses.replace(features, frame=frame, labels=features.labels.where(~test, 1 - features.labels))
    frame = features.frame.copy()
    frame.iloc[0] += 10
    changed_train = dataclasses.replace(features, frame=frame)
    for row in rows:
        fitted = _combat_steps(fit_row(row, fold, features, config, keep_model=True).model)
        same = _combat_steps(fit_row(row, fold, changed_test, config, keep_model=True).model)
        other = _combat_steps(fit_row(row, fold, changed_train, config, keep_model=True).model)
        for family, step in fitted.items():
            assert set(step.centers_) == {"A", "B"}
            for name in FITTED:
                np.testing.assert_array_equal(getattr(same[family], name), getattr(step, name), err_msg=name)
            assert not np.array_equal(other[family].stand_mean_, step.stand_mean_)


def test_leave_centre_out_fold_estimates_the_test_centre(tmp_path):
    """Trained on centre A only, the fold predicts every patient of centre B, whose features ComBat maps onto
    A's (B's scanner doubled them and added 3)."""
    features = _feature_set(tmp_path)
    config = config_from_dict(CONFIG)
    centers = features.centers
    fold = Fold("B", tuple(centers.index[centers == "A"]), tuple(centers.index[centers == "B"]))
    outcome = fit_row(plan_rows(features, config)[0][0], fold, features, config, keep_model=True)
    assert sorted(outcome.predictions["patient_id"]) == sorted(fold.test)
    up_to_combat = outcome.model.best_estimator_[:3]
    assert list(up_to_combat.named_steps["combat"].centers_) == ["A"]
    train, test = (up_to_combat.transform(features.frame.loc[list(patients)]) for patients in (fold.train, fold.test))
    raw = features.frame.loc[list(fold.test), features.blocks["radiomics_us"].columns]
    assert (np.abs(raw.mean().to_numpy() - train.mean(0)) > 2 * train.std(0)).all()
    assert (np.abs(test.mean(0) - train.mean(0)) < 0.2 * train.std(0)).all()  # empirical Bayes leaves a little


def test_a_saved_model_predicts_new_patients_once_given_their_centres(tmp_path):
    """The final model knows the training patients' centres only; assign_centers gives it an external cohort's
    (a centre it never saw, estimated from the cohort's own rows)."""
    features = _feature_set(tmp_path)
    config = config_from_dict(CONFIG)
    model = fit_row(plan_rows(features, config)[0][1], None, features, config, keep_model=True).model  # deep
    external = features.frame.iloc[:10].set_axis([f"X{i}" for i in range(10)]) * 1.5 - 2
    with pytest.raises(ValueError, match="patient X0 has no centre"):
        model.predict_proba(external)
    assert assign_centers(model, pd.Series("C", index=external.index)) >= 1
    assert np.isfinite(model.predict_proba(external)).all()


def test_combat_config_and_centres_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="harmonize.combat must be true or false"):
        config_from_dict(CONFIG | {"harmonize": {"combat": "yes"}})
    with pytest.raises(ConfigError, match="harmonize.new_centers must be one of estimate, refuse"):
        config_from_dict(CONFIG | {"harmonize": {"combat": True, "new_centers": "ignore"}})
    with pytest.raises(ConfigError, match="leave_center_out"):
        config_from_dict(CONFIG | {"protocol": "leave_center_out",
                                   "harmonize": {"combat": True, "new_centers": "refuse"}})
    write_feature_tables(tmp_path, n_patients=30, modalities=("us",), n_radiomics=4, n_deep=4)
    features = load_feature_set(tmp_path)
    with pytest.raises(FeatureTableError, match="add a center column to the manifest"):
        plan_rows(features, config_from_dict(CONFIG))
    centers = pd.Series("A", index=features.labels.index)
    centers.iloc[3] = ""
    with pytest.raises(FeatureTableError, match=f"patient {centers.index[3]} has no centre"):
        plan_rows(dataclasses.replace(features, centers=centers), config_from_dict(CONFIG))
    centers.iloc[:3] = "B"
    centers.iloc[3] = "A"
    with pytest.raises(FeatureTableError, match="centre B has 3 patient"):  # inner_folds 2: at least 4
        plan_rows(dataclasses.replace(features, centers=centers), config_from_dict(CONFIG))
    centers.iloc[3] = "B"
    assert plan_rows(dataclasses.replace(features, centers=centers), config_from_dict(CONFIG))[0]
