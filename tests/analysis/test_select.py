"""Feature-selection transformers on small data with a known answer."""

import numpy as np
import pytest
import skops.io as sio
from sklearn.base import clone
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from mmdlr.analysis.bundle import TRUSTED_TYPES
from mmdlr.select import (
    ClippedPCA,
    FiniteMedianImputer,
    LassoSelector,
    MannWhitneyFilter,
    SpearmanRedundancyFilter,
    mann_whitney_pvalues,
)


@pytest.fixture
def informative_data():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(40), np.ones(40)].astype(int)
    signal = y * 2.0 + rng.normal(size=80)
    X = np.column_stack([signal, rng.normal(size=(80, 5))])  # column 0 informative, 1-5 noise
    return X, y


def test_mann_whitney_pvalues_match_scipy(informative_data):
    from scipy.stats import mannwhitneyu

    X, y = informative_data
    expected = [mannwhitneyu(X[y == 1, j], X[y == 0, j]).pvalue for j in range(X.shape[1])]
    np.testing.assert_allclose(mann_whitney_pvalues(X, y), expected)


def test_mann_whitney_keeps_informative_drops_noise(informative_data):
    X, y = informative_data
    selector = MannWhitneyFilter(p_threshold=0.01).fit(X, y)
    assert selector.get_support().tolist() == [True, False, False, False, False, False]
    assert selector.transform(X).shape == (80, 1)


def test_mann_whitney_falls_back_to_k_best_when_none_pass(informative_data):
    X, y = informative_data
    noise = X[:, 1:]
    selector = MannWhitneyFilter(p_threshold=1e-12, fallback_k=2).fit(noise, y)
    assert selector.get_support().sum() == 2
    best_two = np.argsort(selector.pvalues_)[:2]
    assert set(np.flatnonzero(selector.get_support())) == set(best_two)


def test_mann_whitney_constant_column_gets_p_one():
    y = np.r_[np.zeros(5), np.ones(5)].astype(int)
    X = np.column_stack([np.ones(10), np.arange(10.0)])
    assert mann_whitney_pvalues(X, y)[0] == 1.0


def test_spearman_drops_less_significant_of_duplicated_pair(informative_data):
    X, y = informative_data
    rng = np.random.default_rng(1)
    weaker = X[:, 0] + rng.normal(scale=0.3, size=80)  # rank-correlated with column 0, less significant
    data = np.column_stack([weaker, X[:, 0], X[:, 1]])
    assert mann_whitney_pvalues(data, y)[1] < mann_whitney_pvalues(data, y)[0]
    selector = SpearmanRedundancyFilter(rho_threshold=0.8).fit(data, y)
    assert selector.get_support().tolist() == [False, True, True]


def test_spearman_two_columns_and_threshold(informative_data):
    X, y = informative_data
    pair = np.column_stack([X[:, 0], 3 * X[:, 0] + 1])  # identical ranks
    assert SpearmanRedundancyFilter(0.9).fit(pair, y).get_support().sum() == 1
    independent = X[:, 1:3]
    assert SpearmanRedundancyFilter(0.9).fit(independent, y).get_support().all()


def test_lasso_keeps_informative_and_drops_most_noise():
    rng = np.random.default_rng(2)
    y = np.r_[np.zeros(60), np.ones(60)].astype(int)
    X = np.column_stack([y * 1.5 + rng.normal(size=120), y * -1.5 + rng.normal(size=120), rng.normal(size=(120, 20))])
    selector = LassoSelector(random_state=0).fit(X, y)
    support = selector.get_support()
    assert support[0] and support[1]
    assert support[2:].sum() < 10
    assert np.abs(selector.coef_[:2]).min() > np.abs(selector.coef_[2:]).max()


def test_lasso_falls_back_to_top_k_when_all_coefficients_zero():
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(30), np.ones(30)].astype(int)
    X = rng.normal(size=(60, 8))
    selector = LassoSelector(fallback_k=3, random_state=0).fit(X, y)  # pure noise: CV picks the largest penalty
    assert (selector.coef_ == 0).all()
    assert selector.get_support().sum() == 3


def test_clipped_pca_clips_to_samples_and_features():
    X = np.random.default_rng(4).normal(size=(10, 50))
    assert ClippedPCA(32).fit(X).n_components_ == 9  # n_samples - 1
    assert ClippedPCA(32).fit(X[:, :5]).transform(X[:, :5]).shape == (10, 5)  # n_features
    assert ClippedPCA(3).fit(X).transform(X).shape == (10, 3)


def test_finite_median_imputer_replaces_nan_and_inf_with_training_median():
    train = np.array([[1.0, np.nan], [3.0, 4.0], [np.inf, 6.0], [5.0, np.nan]])
    imputer = FiniteMedianImputer().fit(train)
    np.testing.assert_allclose(imputer.transform([[np.nan, -np.inf]]), [[3.0, 5.0]])
    assert FiniteMedianImputer().fit([[np.nan], [np.nan]]).transform([[np.nan]]).tolist() == [[0.0]]


def test_finite_median_imputer_gives_simple_imputers_medians_and_reads_its_older_model_files():
    rng = np.random.default_rng(5)
    train = rng.normal(size=(301, 40))
    train[:, 20:][rng.random((301, 20)) < 0.1] = np.nan  # columns 0-19 complete (numpy.median), the rest not
    train[:, 3] = np.nan
    train[7, 5] = np.inf
    finite = np.where(np.isinf(train), np.nan, train)
    for rows in (301, 300):  # odd and even: the middle value, the mean of the two middle ones
        simple = SimpleImputer(strategy="median", keep_empty_features=True).fit(finite[:rows])
        imputer = FiniteMedianImputer().fit(train[:rows])
        np.testing.assert_array_equal(imputer.statistics_, simple.statistics_)
        np.testing.assert_array_equal(imputer.transform(train), simple.transform(finite))
    older = FiniteMedianImputer()  # as fitted before statistics_: the SimpleImputer itself (imputer_)
    older.__dict__.update(imputer_=simple, n_features_in_=40)
    loaded = sio.loads(sio.dumps(older), trusted=sorted(TRUSTED_TYPES))
    np.testing.assert_array_equal(loaded.transform(train), simple.transform(finite))


def test_selectors_clone_and_fit_inside_a_pipeline(informative_data):
    X, y = informative_data
    pipeline = make_pipeline(FiniteMedianImputer(), MannWhitneyFilter(0.01), SpearmanRedundancyFilter(0.9),
                             ClippedPCA(2))
    cloned = clone(pipeline)
    assert cloned.get_params()["mannwhitneyfilter__p_threshold"] == 0.01
    assert cloned.fit(X, y).transform(X).shape == (80, 1)


@parametrize_with_checks([LassoSelector(), FiniteMedianImputer()])
def test_lasso_selector_and_imputer_pass_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
