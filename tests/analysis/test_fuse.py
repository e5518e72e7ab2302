"""Early-fusion subsets, the accuracy-weighted ensemble and out-of-fold stacking."""

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mmdlr.classify import model_search
from mmdlr.evaluate import StratifiedFoldsWithGroups
from mmdlr.fuse import (AccuracyWeightedEnsemble, StackingFusion, block_presence, fit_base, fusion_subsets,
                        out_of_fold_probabilities)

BLOCKS = {"us": ["us__a", "us__b"], "mr": ["mr__a", "mr__b"], "mg": ["mg__a", "mg__b"]}


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    n = 90
    y = np.r_[np.zeros(45), np.ones(45)].astype(int)
    columns = {}
    for strength, (name, block) in zip((2.0, 1.0, 0.2), BLOCKS.items()):
        signal = strength * y + rng.normal(size=n)
        columns[block[0]], columns[block[1]] = signal, rng.normal(size=n)
    X = pd.DataFrame(columns)
    X.loc[X.index[:10], BLOCKS["mg"]] = np.nan  # 10 patients without MG
    return X, y


def _plain_model():
    return make_pipeline(StandardScaler(), LogisticRegression())


def _search():
    return model_search([("scale", StandardScaler())], {"lr": {"C": [0.1, 1.0]}}, inner_folds=3)


def test_fusion_subsets_and_presence(data):
    X, _ = data
    assert fusion_subsets(["us", "mr", "mg"]) == [("us", "mr"), ("us", "mg"), ("mr", "mg"), ("us", "mr", "mg")]
    presence = block_presence(X, BLOCKS)
    assert presence["mg"].sum() == 80 and presence[["us", "mr"]].all().all()


def test_ensemble_weights_are_softmax_of_search_accuracies(data):
    X, y = data
    ensemble = AccuracyWeightedEnsemble([(name, _search()) for name in BLOCKS], BLOCKS).fit(X, y)
    for name, search in ensemble.estimators_.items():
        expected = search.cv_results_["mean_test_accuracy"][search.best_index_]
        assert ensemble.accuracies_[name] == pytest.approx(expected)
    np.testing.assert_allclose(ensemble.weights_, softmax(ensemble.accuracies_.to_numpy()))
    assert ensemble.weights_["us"] > ensemble.weights_["mg"]  # the informative modality weighs more


def test_ensemble_temperature_sharpens_the_near_uniform_literal_weights(data):
    """T=1 (the paper's softmax of accuracies in [0, 1]) is near-uniform; T -> 0 approaches the best model."""
    X, y = data
    literal = AccuracyWeightedEnsemble([(name, _plain_model()) for name in BLOCKS], BLOCKS).fit(X, y)
    sharp = AccuracyWeightedEnsemble([(name, _plain_model()) for name in BLOCKS], BLOCKS, temperature=0.05).fit(X, y)
    np.testing.assert_allclose(sharp.accuracies_, literal.accuracies_)
    np.testing.assert_allclose(sharp.weights_, softmax(literal.accuracies_.to_numpy() / 0.05))
    spread = literal.accuracies_.max() - literal.accuracies_.min()
    assert spread > 0.2 and literal.weights_.max() / literal.weights_.min() == pytest.approx(np.exp(spread))
    assert literal.weights_.max() < 0.5 < sharp.weights_["us"]  # three models: uniform would be 1/3 each
    with pytest.raises(ValueError, match="temperature must be > 0"):
        AccuracyWeightedEnsemble([(name, _plain_model()) for name in BLOCKS], BLOCKS, temperature=0).fit(X, y)


def test_ensemble_measures_accuracy_by_cv_for_plain_estimators(data):
    X, y = data
    ensemble = AccuracyWeightedEnsemble([(name, _plain_model()) for name in BLOCKS], BLOCKS, cv=3).fit(X, y)
    rows = X["us__a"].notna()
    expected = cross_val_score(_plain_model(), X.loc[rows, BLOCKS["us"]], y, cv=StratifiedFoldsWithGroups(3),
                               scoring="accuracy").mean()
    assert ensemble.accuracies_["us"] == pytest.approx(expected)


def test_ensemble_averages_available_modalities_and_reports_them(data):
    X, y = data
    ensemble = AccuracyWeightedEnsemble([(name, _plain_model()) for name in BLOCKS], BLOCKS).fit(X, y)
    base = ensemble.base_probabilities(X)
    assert base["mg"].isna().sum() == 10 and base[["us", "mr"]].notna().all().all()
    weights = ensemble.weights_
    complete, partial = X.index[20], X.index[0]
    expected_complete = (base.loc[complete] * weights).sum() / weights.sum()
    expected_partial = (base.loc[partial, ["us", "mr"]] * weights[["us", "mr"]]).sum() / weights[["us", "mr"]].sum()
    probability = ensemble.predict_proba(X)[:, 1]
    assert probability[20] == pytest.approx(expected_complete)
    assert probability[0] == pytest.approx(expected_partial)
    used = ensemble.used_blocks(X)
    assert used.loc[partial].to_dict() == {"us": True, "mr": True, "mg": False}
    with pytest.raises(ValueError, match="without any modality"):
        ensemble.predict_proba(X.assign(**{c: np.nan for cols in BLOCKS.values() for c in cols}).iloc[:2])


def test_stacking_meta_learner_is_trained_on_out_of_fold_probabilities(data):
    X, y = data
    stacking = StackingFusion([(name, _plain_model()) for name in BLOCKS], BLOCKS,
                              cv=3, random_state=0).fit(X, y)  # default meta-learner: logistic regression
    for name, columns in BLOCKS.items():
        rows = X[columns].notna().any(axis=1).to_numpy()
        oof = cross_val_predict(_plain_model(), X.loc[rows, columns], y[rows],
                                cv=StratifiedFoldsWithGroups(3, 0), method="predict_proba")[:, 1]
        np.testing.assert_allclose(stacking.meta_features_.loc[rows, name], oof)
        in_sample = clone(_plain_model()).fit(X.loc[rows, columns], y[rows]).predict_proba(
            X.loc[rows, columns])[:, 1]
        assert not np.allclose(stacking.meta_features_.loc[rows, name], in_sample)
        np.testing.assert_allclose(stacking.estimators_[name].predict_proba(X.loc[rows, columns])[:, 1], in_sample)
    assert (stacking.meta_features_.loc[X.index[:10], "mg"] == 0.5).all()  # missing MG -> uninformative 0.5
    refit_meta = LogisticRegression().fit(stacking.meta_features_, y)
    np.testing.assert_allclose(stacking.meta_estimator_.coef_, refit_meta.coef_)


class RecordingFolds(StratifiedFoldsWithGroups):
    """Grouped folds that record whether each split kept every group on one side."""

    splits: list = []

    def split(self, X, y, groups=None):
        for train, test in super().split(X, y, groups):
            RecordingFolds.splits.append(groups is not None and set(groups[train]).isdisjoint(groups[test]))
            yield train, test


def test_stacking_with_meta_search_predicts_and_keeps_groups_in_one_fold(data):
    X, y = data
    groups = np.repeat(np.arange(45), 2)
    stacking = StackingFusion([(name, _search()) for name in BLOCKS], BLOCKS, meta_estimator=_search(),
                              cv=RecordingFolds(3))
    RecordingFolds.splits.clear()
    stacking.fit(X, y, groups=groups)
    assert len(RecordingFolds.splits) == 3 * len(BLOCKS) and all(RecordingFolds.splits)
    probability = stacking.predict_proba(X)[:, 1]
    assert probability.shape == (90,) and ((0 <= probability) & (probability <= 1)).all()
    assert stacking.predict(X).tolist() == (probability >= 0.5).astype(int).tolist()


def test_late_fusion_needs_dataframe_and_matching_blocks(data):
    X, y = data
    with pytest.raises(TypeError, match="DataFrame"):
        AccuracyWeightedEnsemble([(name, _search()) for name in BLOCKS], BLOCKS).fit(X.to_numpy(), y)
    with pytest.raises(ValueError, match="must match block names"):
        AccuracyWeightedEnsemble([("us", _search())], BLOCKS).fit(X, y)
    assert clone(StackingFusion([("us", _search())], {"us": BLOCKS["us"]}, meta_estimator=_search())).cv == 3


def test_a_searchs_out_of_fold_probabilities_are_its_choices_inner_cv_predictions(data):
    """Stacking's meta-features of a model search: the chosen candidate refitted on each of the search's own
    inner splits (groups kept together), not a search per split; their per-split AUCs are its inner-CV scores."""
    X, y = data
    groups = np.repeat(np.arange(45), 2)
    search = model_search([("scale", StandardScaler())], {"lr": {"C": [0.01, 1.0]}, "svm": {"estimator__C": [1.0]}})
    base = fit_base(search, X[BLOCKS["us"]], y, groups, StratifiedFoldsWithGroups(3, 0), out_of_fold=True)
    fitted = base.estimator
    splits = list(StratifiedFoldsWithGroups(3, 0).split(X, y, groups))
    assert all(set(groups[train]).isdisjoint(groups[test]) for train, test in splits)
    for k, (_, test) in enumerate(splits):
        assert roc_auc_score(y[test], base.out_of_fold[test]) == pytest.approx(
            fitted.cv_results_[f"split{k}_test_auc"][fitted.best_index_])
    assert fitted.estimator.memory._store == {}  # the fit cache is empty once the fit returns


@pytest.mark.parametrize("grid, screen_margin", [({"lr": {"C": [0.01, 1.0]}, "rf": {"max_depth": [None, 2]}}, None),
                                                  ({"xgboost": {"max_depth": [2, 3]}, "knn": {}}, 0.02)])
def test_a_search_keeps_its_choices_inner_cv_predictions_bit_for_bit(data, grid, screen_margin):
    """The predictions the search scored its choice on are kept (``out_of_fold_``) and are the refitted ones."""
    X, y = data
    groups, cv = np.repeat(np.arange(45), 2), StratifiedFoldsWithGroups(3, 0)
    search = model_search([("scale", StandardScaler())], grid, screen_margin=screen_margin)
    fitted = clone(search).fit(X[BLOCKS["us"]], y, groups=groups)
    kept = fitted.out_of_fold_
    assert kept is not None and not np.isnan(kept).any()
    assert out_of_fold_probabilities(search, fitted, X[BLOCKS["us"]], y, groups, cv) is kept
    fitted.out_of_fold_ = None  # the fallback: the choice refitted on each inner split
    np.testing.assert_array_equal(out_of_fold_probabilities(search, fitted, X[BLOCKS["us"]], y, groups, cv), kept)
    other_splits = StratifiedFoldsWithGroups(3, 1)
    fitted.out_of_fold_ = kept
    assert out_of_fold_probabilities(search, fitted, X[BLOCKS["us"]], y, groups, other_splits) is not kept


def test_a_search_that_chose_a_screened_svm_keeps_no_predictions(data):
    X, y = data
    search = model_search([("scale", StandardScaler())], {"svm": {}}, screen_margin=0.02).fit(X[BLOCKS["us"]], y)
    assert search.out_of_fold_ is None  # its scores were decision values, not the calibrated probabilities


def test_late_fusion_reuses_given_base_fits_and_checks_their_patients(data):
    X, y = data
    fresh = StackingFusion([(name, _search()) for name in BLOCKS], BLOCKS, meta_estimator=_search()).fit(X, y)
    bases = {}
    for name, columns in BLOCKS.items():
        rows = X[columns].notna().any(axis=1).to_numpy()
        bases[name] = fit_base(_search(), X.loc[rows, columns], y[rows], cv=StratifiedFoldsWithGroups(3, 0),
                               out_of_fold=True)
    reused = StackingFusion([(name, _search()) for name in BLOCKS], BLOCKS, meta_estimator=_search()).fit(
        X, y, bases=bases)
    pd.testing.assert_frame_equal(reused.meta_features_, fresh.meta_features_)
    np.testing.assert_array_equal(reused.predict_proba(X), fresh.predict_proba(X))
    assert all(reused.estimators_[name] is bases[name].estimator for name in BLOCKS)
    ensemble = AccuracyWeightedEnsemble([(name, _search()) for name in BLOCKS], BLOCKS)
    np.testing.assert_array_equal(ensemble.fit(X, y, bases=bases).predict_proba(X),
                                  clone(ensemble).fit(X, y).predict_proba(X))
    with pytest.raises(ValueError, match="other patients"):
        clone(ensemble).fit(X.iloc[1:], y[1:], bases=bases)
