"""Region blocks and the ICC robustness filter in the analysis: rows, fit-in-fold, config, estimator checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import check_estimator

from mmdlr.analysis.config import ConfigError, config_from_dict
from mmdlr.analysis.features import FeatureTableError, load_feature_set
from mmdlr.analysis.fold import fit_row
from mmdlr.analysis.grid import plan_rows
from mmdlr.evaluate import Fold
from mmdlr.select.icc import ICCThresholdSelector

from .synthetic_features import write_feature_tables

CONFIG = {"protocol": "nested_cv", "nested_cv": {"outer_folds": 2, "repeats": 1}, "inner_folds": 2,
          "classifiers": {"lr": {"C": [1.0]}}, "families": ["radiomics"], "bootstrap": {"n": 100},
          "fusion": {"ensemble": False, "stacking": False}, "parallel": {"n_jobs": 1}}


def test_selector_passes_the_estimator_checks():
    check_estimator(ICCThresholdSelector())


def test_selector_computes_the_icc_on_the_rows_it_is_fitted_on():
    """Feature "x" is reproduced on patients a* and not on b*: kept when fitted on a*, dropped on b*."""
    rng = np.random.default_rng(0)
    patients = [f"a{i}" for i in range(20)] + [f"b{i}" for i in range(20)]
    x, y = rng.normal(size=40), rng.normal(size=40)
    perturbed = np.stack([np.column_stack([np.r_[x[:20] + 0.01 * rng.normal(size=20), rng.normal(size=20)],
                                           y + 0.01 * rng.normal(size=40)]) for _ in range(3)])
    X = pd.DataFrame({"x": x, "y": y, "not_judged": rng.normal(size=40)}, index=patients)
    selector = ICCThresholdSelector(perturbed, patients, ["x", "y"], threshold=0.75)
    on_a = selector.fit(X.iloc[:20]).get_support()
    assert list(on_a) == [True, True, True] and selector.icc_[0] > 0.99 and np.isnan(selector.icc_[2])
    assert list(selector.fit(X.iloc[20:]).get_support()) == [False, True, True]
    assert selector.transform(X.iloc[20:]).shape == (20, 2)
    with pytest.raises(ValueError, match="DataFrame indexed by patient id"):
        selector.fit(X.to_numpy())


def _with_regions_and_perturbations(directory, noisy_feature: str):
    """radiomics_us.csv, a ring table and perturbed copies of radiomics_us in which ``noisy_feature`` is noise."""
    write_feature_tables(directory, n_patients=60, modalities=("us",), n_radiomics=6)
    table = pd.read_csv(directory / "radiomics_us.csv")
    rng = np.random.default_rng(1)
    ring = table.assign(**{c: table[c] + rng.normal(size=len(table)) for c in table.columns if "_F" in c})
    ring.to_csv(directory / "radiomics_us_peritumoral.csv", index=False)
    for name in ("erode_1px", "jitter_1px"):
        perturbed = table.copy()
        features = [c for c in table.columns if "_F" in c]
        perturbed[features] = table[features] + 0.01 * rng.normal(size=(len(table), len(features)))
        perturbed[noisy_feature] = rng.normal(size=len(table))
        (directory / "robustness" / "radiomics_us").mkdir(parents=True, exist_ok=True)
        perturbed.to_csv(directory / "robustness" / "radiomics_us" / f"{name}.csv", index=False)


def test_region_blocks_rows_and_the_icc_filter_inside_the_training_fold(tmp_path):
    _with_regions_and_perturbations(tmp_path, noisy_feature="original_firstorder_F0")
    features = load_feature_set(tmp_path)
    assert features.modalities == ["us"] and features.absent == []
    assert set(features.blocks) == {"radiomics_us", "radiomics_us_peritumoral", "deep_us"}
    assert features.blocks["radiomics_us_peritumoral"].region == "peritumoral"
    assert list(features.perturbed) == ["erode_1px", "jitter_1px"]

    config = config_from_dict(CONFIG | {"select": {"icc_threshold": 0.75}})
    rows, _ = plan_rows(features, config)
    assert [(row.method, row.blocks) for row in rows] == [
        ("US", ("radiomics_us",)), ("US peritumoral", ("radiomics_us_peritumoral",)),
        ("US intra+peritumoral", ("radiomics_us", "radiomics_us_peritumoral"))]

    train = features.labels.index[:40]
    fold = Fold("0", tuple(train), tuple(features.labels.index[40:]))
    outcome = fit_row(rows[2], fold, features, config, keep_model=True)
    icc = outcome.model.best_estimator_.named_steps["icc"]
    kept = dict(zip(icc.feature_names_in_, icc.get_support()))
    assert kept["radiomics_us__original_firstorder_F0"] is np.False_  # noise under perturbation
    assert kept["radiomics_us__original_firstorder_F1"] and kept["radiomics_us_peritumoral__original_firstorder_F0"]
    assert sorted(outcome.predictions["patient_id"]) == sorted(fold.test)


def test_icc_threshold_needs_perturbed_tables_and_a_valid_value(tmp_path):
    write_feature_tables(tmp_path, n_patients=30, modalities=("us",), n_radiomics=4)
    with pytest.raises(FeatureTableError, match="radiomics.robustness"):
        plan_rows(load_feature_set(tmp_path), config_from_dict(CONFIG | {"select": {"icc_threshold": 0.75}}))
    with pytest.raises(ConfigError, match="select.icc_threshold"):
        config_from_dict(CONFIG | {"select": {"icc_threshold": 1.5}})
