"""Groups reach every inner split: the grid search's, LASSO's, the SVM's Platt scaling, stacking's, Youden's.

The cohorts here hold each patient twice (two identical feature rows sharing a group, like duplicate
images of one lesion), so a split that separates a group shows as one row on both of its sides. A spy
on every K-fold splitter (ours and scikit-learn's) records each split.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import BaseCrossValidator
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from mmdlr.analysis import config_from_dict, load_feature_set, run_analysis
from mmdlr.analysis.features import FeatureTableError
from mmdlr.analysis.fold import fit_row
from mmdlr.analysis.grid import GridRow
from mmdlr.classify import deep_steps, model_search, radiomics_steps
from mmdlr.classify.zoo import PlattScaledSVC
from mmdlr.cli.main import main
from mmdlr.evaluate import Fold, StratifiedFoldsWithGroups
from mmdlr.select import LassoSelector

from .synthetic_features import write_feature_tables


def duplicated_noise(n_groups: int = 40, n_features: int = 12, seed: int = 0):
    """Pure-noise features, every row twice: (X frame, y, groups)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(np.repeat(rng.normal(size=(n_groups, n_features)), 2, axis=0),
                     columns=[f"a__f{j}" for j in range(n_features)])
    y = np.repeat(rng.permutation(np.arange(n_groups) % 2), 2)
    return X, y, np.repeat(np.arange(n_groups), 2)


def _row_keys(X) -> list[bytes] | None:
    values = np.asarray(X)
    if values.ndim != 2 or not np.issubdtype(values.dtype, np.number):
        return None  # outer folds split patient ids; tested in test_runner.py
    return [row.tobytes() for row in np.round(values.astype(float), 6)]


class SplitSpy:
    """Records, for every split any K-fold splitter makes, the calling module and whether a row is on both sides."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, bool]] = []
        for cls in (BaseCrossValidator, StratifiedFoldsWithGroups):
            monkeypatch.setattr(cls, "split", self._spying(cls.split))

    def _spying(self, split):
        spy = self

        def spied(splitter, X, y=None, groups=None):
            caller = sys._getframe(1).f_globals["__name__"]
            keys = _row_keys(X)
            for train, test in split(splitter, X, y, groups):
                if keys is not None:
                    spy.calls.append((caller, bool({keys[i] for i in train} & {keys[i] for i in test})))
                yield train, test

        return spied

    @property
    def callers(self) -> set[str]:
        return {caller for caller, _ in self.calls}

    @property
    def separated(self) -> list[str]:
        return [caller for caller, separated in self.calls if separated]


def test_lasso_penalty_folds_are_grouped_and_change_the_penalty():
    X, y, groups = duplicated_noise(n_groups=30, n_features=80)
    X = StandardScaler().fit_transform(X)  # the selector's expected input
    grouped = LassoSelector(random_state=0).fit(X, y, groups=groups)
    leaky = LassoSelector(random_state=0).fit(X, y)
    # a twin in the other fold rewards fitting the noise: the leaky path picks a smaller penalty
    assert grouped.alpha_ > leaky.alpha_
    assert leaky.get_support().sum() > grouped.get_support().sum()


def test_platt_scaling_folds_keep_groups_together():
    X, y, groups = duplicated_noise()
    svm = PlattScaledSVC(SVC(), random_state=0).fit(X, y, groups=groups)
    folds = svm.calibrated_.cv
    assert len(folds) == 5 and all(set(groups[train]).isdisjoint(groups[test]) for train, test in folds)
    ungrouped = PlattScaledSVC(SVC(), random_state=0).fit(X, y).calibrated_.cv
    assert not all(set(groups[train]).isdisjoint(groups[test]) for train, test in ungrouped)


def test_screened_svm_is_calibrated_on_grouped_folds_when_chosen():
    X, y, groups = duplicated_noise()
    search = model_search(deep_steps({"a": list(X.columns)}, 4), {"svm": {}}, screen_margin=0.01)
    svm = search.fit(X, y, groups=groups).best_estimator_.named_steps["clf"]
    assert search.cv_results_["screened"][search.best_index_] and svm.calibrate
    assert all(set(groups[train]).isdisjoint(groups[test]) for train, test in svm.calibrated_.cv)


def test_search_inner_cv_with_groups_is_not_fooled_by_twins():
    X, y, groups = duplicated_noise()
    grid = {"knn": {"n_neighbors": [1]}}
    grouped = model_search(deep_steps({"a": list(X.columns)}, 4), grid).fit(X, y, groups=groups)
    leaky = model_search(deep_steps({"a": list(X.columns)}, 4), grid).fit(X, y)
    # measured over seeds 0-3: leaky 0.80-0.87 (a twin in training is the nearest neighbour), grouped 0.40-0.60
    assert leaky.cv_results_["mean_test_accuracy"][0] > 0.75
    assert grouped.cv_results_["mean_test_accuracy"][0] < 0.65


@pytest.mark.parametrize("classifiers", [{"lr": {}, "svm": {}}, {"svm": {}, "lr": {}}], ids=["lr-first", "svm-first"])
@pytest.mark.parametrize("steps", ["radiomics", "deep"])
def test_search_routes_groups_to_every_inner_split(monkeypatch, steps, classifiers):
    """Whichever candidate comes first and whether or not a pre-processing step uses groups."""
    X, y, groups = duplicated_noise()
    columns = list(X.columns)
    family_steps = radiomics_steps(columns) if steps == "radiomics" else deep_steps({"a": columns}, 4)
    spy = SplitSpy(monkeypatch)
    search = model_search(family_steps, classifiers, inner_folds=3).fit(X, y, groups=groups)
    assert np.isfinite(search.cv_results_["mean_test_auc"]).all()  # no candidate refused the groups
    expected = {"sklearn.model_selection._search", "mmdlr.classify.zoo"}
    expected |= {"mmdlr.select.lasso"} if steps == "radiomics" else set()
    assert expected <= spy.callers and spy.separated == []
    spy.calls.clear()
    model_search(family_steps, classifiers, inner_folds=3).fit(X, y)
    assert expected <= set(spy.separated)  # the spy sees twins separated when no groups are given


def _grouped_tables(directory, n_groups: int, split: bool, seed: int):
    """Feature tables of ``n_groups`` patients, each present twice (same rows, same group)."""
    write_feature_tables(directory, n_patients=n_groups, modalities=("mri", "us"), n_radiomics=8, n_deep=12,
                         seed=seed)
    rng = np.random.default_rng(seed)
    sides = pd.Series(np.where(rng.random(n_groups) < 0.25, "test", "train"))
    for path in directory.glob("*.csv"):
        table = pd.read_csv(path, dtype={"patient_id": str})
        twins = pd.concat([table.assign(group=table["patient_id"], split=sides.to_numpy() if split else ""),
                           table.assign(patient_id=table["patient_id"] + "b", group=table["patient_id"],
                                        split=sides.to_numpy() if split else "")])
        twins.to_csv(path, index=False)
    return directory


# LASSO (radiomics), Platt scaling (svm: every candidate calibrated, no screening), stacking's out-of-fold
# probabilities and meta-learner search; threads, so that the spy sees every fit
RUNNER_GRID = {"classifiers": {"lr": {"C": [1.0]}, "svm": {"estimator__C": [1.0]}}, "families": ["radiomics"],
               "fusion": {"ensemble": False}, "bootstrap": {"n": 100}, "save_models": False,
               "search": {"screen_margin": None}, "parallel": {"backend": "threading", "n_jobs": 2}}


@pytest.mark.parametrize("protocol", ["holdout", "nested_cv"])
def test_runner_hands_groups_to_every_inner_split(tmp_path, monkeypatch, protocol):
    features = _grouped_tables(tmp_path / "features", n_groups=30, split=protocol == "holdout", seed=4)
    config = config_from_dict({**RUNNER_GRID, "protocol": protocol, "nested_cv": {"outer_folds": 2, "repeats": 1}})
    spy = SplitSpy(monkeypatch)
    result = run_analysis(features, tmp_path / "out", config, progress=False)
    assert result.skipped == [] and result.predictions["probability"].notna().all()
    # stacking's out-of-fold probabilities are the searches' own (mmdlr.classify.search), on splits checked to be
    # the stacking's (mmdlr.fuse.late)
    assert {"sklearn.model_selection._search", "mmdlr.select.lasso", "mmdlr.classify.zoo", "mmdlr.classify.search",
            "mmdlr.fuse.late"} <= spy.callers
    assert spy.separated == []


def test_youden_threshold_out_of_fold_predictions_keep_groups_together(tmp_path, monkeypatch):
    features = load_feature_set(_grouped_tables(tmp_path / "features", n_groups=30, split=True, seed=5))
    fold = Fold("holdout", tuple(features.split.index[features.split == "train"]),
                tuple(features.split.index[features.split == "test"]))
    row = GridRow("radiomics", "MRI+US", "early", ("radiomics_mri", "radiomics_us"))
    spy = SplitSpy(monkeypatch)
    outcome = fit_row(row, fold, features, config_from_dict({**RUNNER_GRID, "threshold": "youden"}))
    assert 0 < outcome.threshold < 1
    # Youden's out-of-fold probabilities are the search's own, on splits checked to be the threshold's
    assert {"mmdlr.classify.search", "mmdlr.fuse.late", "mmdlr.select.lasso", "mmdlr.classify.zoo"} <= spy.callers
    assert spy.separated == []


def test_analyze_refuses_a_split_that_separates_a_group(tmp_path, capsys):
    features = write_feature_tables(tmp_path / "features", n_patients=40, modalities=("us",), split=True, seed=5)
    for path in features.glob("*.csv"):
        table = pd.read_csv(path, dtype={"patient_id": str, "group": str}, keep_default_na=False)
        table.loc[table["patient_id"].isin(["P001", "P002", "P003"]), "group"] = "woman7"
        table.loc[table["patient_id"].isin(["P001", "P002"]), "split"] = "train"
        table.loc[table["patient_id"] == "P003", "split"] = "Test"
        table.to_csv(path, index=False)
    with pytest.raises(FeatureTableError, match=r"^group woman7 is split apart \(P001, P002 in train; P003 in test\)"):
        load_feature_set(features)
    assert main(["-q", "analyze", "--features", str(features), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "woman7" in error and "P003 in test" in error
