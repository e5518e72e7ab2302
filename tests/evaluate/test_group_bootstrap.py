"""The class-stratified BCa bootstrap over groups of patients."""

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import brier_score_loss, roc_auc_score

from mmdlr.evaluate import BOOTSTRAP_STATISTICS, delong_auc_variance, group_bootstrap_ci


def test_weighted_statistics_equal_the_metric_of_the_expanded_resample():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(15), np.ones(10)].astype(int)
    p = np.round(rng.random(25), 1)  # ties
    weights = rng.integers(0, 4, size=(6, 25))
    weights[:, [0, 20]] += 1  # both classes in every resample
    for row, drawn in zip(np.arange(6), weights):
        index = np.repeat(np.arange(25), drawn)
        assert BOOTSTRAP_STATISTICS["auc"](y, p, weights)[row] == pytest.approx(roc_auc_score(y[index], p[index]))
        assert BOOTSTRAP_STATISTICS["brier"](y, p, weights)[row] == pytest.approx(brier_score_loss(y[index], p[index]))


def test_copies_of_a_patient_move_together():
    """Five copies of every patient in one group give the interval of the patients themselves; treated as
    independent patients they would give one about sqrt(5) times narrower."""
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(40), np.ones(40)].astype(int)
    p = np.clip(0.35 * y + 0.65 * rng.random(80), 0, 1)
    copies = np.repeat(np.arange(80), 5)
    for metric in ("brier", "auc"):
        alone = group_bootstrap_ci(y, p, None, metric, n_boot=1000, seed=3)
        grouped = group_bootstrap_ci(y[copies], p[copies], copies, metric, n_boot=1000, seed=3)
        independent = group_bootstrap_ci(y[copies], p[copies], None, metric, n_boot=1000, seed=3)
        width = alone.high - alone.low
        assert grouped.high - grouped.low == pytest.approx(width, rel=0.1)
        assert independent.high - independent.low < 0.6 * width


def test_seeded_and_close_to_delong_off_the_boundary():
    rng = np.random.default_rng(2)
    y = np.r_[np.zeros(60), np.ones(60)].astype(int)
    score = y + rng.normal(size=120)
    first = group_bootstrap_ci(y, score, None, "auc", n_boot=2000, seed=7)
    assert first == group_bootstrap_ci(y, score, None, "auc", n_boot=2000, seed=7)
    auc, variance = delong_auc_variance(y, score)
    half = norm.ppf(0.975) * np.sqrt(variance)
    assert (first.low, first.high) == pytest.approx((auc - half, auc + half), abs=0.02)


def test_bootstrap_auc_coverage_on_simulated_binormal_data():
    """95% intervals cover the true AUC (binormal, d' = 1) in roughly 90-99% of 200 simulated studies."""
    rng = np.random.default_rng(11)
    true_auc = norm.cdf(1 / np.sqrt(2))
    covered = 0
    for study in range(200):
        y = np.r_[np.zeros(40), np.ones(40)].astype(int)
        low, high, _ = group_bootstrap_ci(y, y + rng.normal(size=80), None, "auc", n_boot=300, seed=study)
        covered += low <= true_auc <= high
    assert 0.88 <= covered / 200 <= 0.99


def test_degenerate_or_too_small_resamples_are_nan_with_the_reason():
    y = np.r_[np.zeros(20), np.ones(10)].astype(int)
    low, high, note = group_bootstrap_ci(y, y + 0.0, None, "auc", n_boot=200, seed=0)  # AUC 1 in every resample
    assert np.isnan(low) and np.isnan(high) and "same value" in note
    low, high, note = group_bootstrap_ci(y, np.full(30, 0.4), np.r_[np.arange(20), np.full(10, 99)], "brier")
    assert np.isnan(low) and np.isnan(high) and "(1, 20)" in note  # the 10 malignant cases are one group
