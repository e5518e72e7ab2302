"""Wilson, logit-DeLong and Newcombe intervals against hand-computed references, at and off the boundary."""

import numpy as np
import pytest
from scipy.stats import beta, norm

from mmdlr.evaluate import auc_ci, delong_auc_variance, newcombe_auc_ci, wilson_ci

Z = norm.ppf(0.975)


def _wilson_by_hand(k, n):
    """Wilson 1927: (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)."""
    p = k / n
    centre, spread = p + Z**2 / (2 * n), Z * np.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    return (centre - spread) / (1 + Z**2 / n), (centre + spread) / (1 + Z**2 / n)


@pytest.mark.parametrize("k, n", [(0, 42), (42, 42), (17, 42), (1, 3), (120, 123)])
def test_wilson_matches_closed_form_and_never_collapses(k, n):
    low, high, note = wilson_ci(k, n)
    assert (low, high) == pytest.approx(_wilson_by_hand(k, n), abs=1e-12) and note == ""
    assert high - low > 0.05
    clopper_pearson = (beta.ppf(0.025, k, n - k + 1) if k else 0.0, beta.ppf(0.975, k + 1, n - k) if k < n else 1.0)
    assert clopper_pearson[0] <= low + 1e-9 and high <= clopper_pearson[1] + 1e-9  # Wilson is never wider


def test_wilson_at_42_of_42_is_the_issue_interval_and_empty_is_nan():
    assert wilson_ci(42, 42)[:2] == pytest.approx((0.916, 1.0), abs=5e-4)
    low, high, note = wilson_ci(0, 0)
    assert np.isnan(low) and np.isnan(high) and "no cases" in note


def test_auc_ci_is_delong_on_the_logit_scale():
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(30), np.ones(30)].astype(int)
    score = y + rng.normal(size=60)
    auc, (low, high, note) = auc_ci(y, score)
    positives, negatives = score[y == 1], score[y == 0]  # DeLong 1988 from its definition
    psi = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
    variance = psi.mean(axis=1).var(ddof=1) / 30 + psi.mean(axis=0).var(ddof=1) / 30
    assert delong_auc_variance(y, score)[1] == pytest.approx(variance)
    logit = np.log(psi.mean() / (1 - psi.mean()))
    half = Z * np.sqrt(variance) / (psi.mean() * (1 - psi.mean()))
    assert auc == pytest.approx(psi.mean())
    assert (low, high) == pytest.approx((1 / (1 + np.exp(-(logit - half))), 1 / (1 + np.exp(-(logit + half)))))
    assert low < auc < high and note == ""
    assert high - auc < auc - low  # asymmetric: shorter towards 1


def _newcombe_by_grid(auc, m, n):
    """The set of theta on a fine grid with (auc - theta)^2 <= z^2 V(theta), Newcombe 2006 method 5."""
    theta = np.linspace(0, 1, 2_000_001)
    n_star = (m + n) / 2
    v = theta * (1 - theta) * (1 + (n_star - 1) * ((1 - theta) / (2 - theta) + theta / (1 + theta))) / (m * n)
    accepted = theta[(auc - theta) ** 2 <= Z**2 * v]
    return accepted.min(), accepted.max()


@pytest.mark.parametrize("auc, m, n", [(1.0, 12, 30), (0.0, 12, 30), (0.9, 41, 82), (0.5, 5, 5), (0.97, 2, 3)])
def test_newcombe_matches_grid_inversion_of_its_score_equation(auc, m, n):
    low, high, _ = newcombe_auc_ci(auc, m, n)
    assert (low, high) == pytest.approx(_newcombe_by_grid(auc, m, n), abs=2e-6)


def test_perfect_separation_gets_an_informative_named_interval():
    y = np.r_[np.zeros(30), np.ones(12)].astype(int)
    score = y + np.linspace(0, 0.5, 42)
    auc, (low, high, note) = auc_ci(y, score)
    assert auc == 1.0 and high == 1.0 and 0.8 < low < 0.95
    assert "Newcombe" in note and "AUC = 1.000" in note
    flipped_auc, flipped = auc_ci(y, -score)
    assert flipped_auc == 0.0 and flipped[:2] == pytest.approx((1 - high, 1 - low))
    tied_auc, (tied_low, tied_high, tied_note) = auc_ci(y, np.full(42, 0.5))  # DeLong variance 0 at AUC 0.5
    assert tied_auc == 0.5 and tied_low < 0.5 < tied_high and "variance 0" in tied_note


def test_undefined_auc_intervals_are_nan_with_the_reason():
    auc, (low, high, note) = auc_ci([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.9])
    assert auc == 1.0 and np.isnan(low) and np.isnan(high) and "1 malignant, 3 benign" in note
    auc, (low, high, note) = auc_ci([1, 1], [0.2, 0.9])
    assert np.isnan(auc) and np.isnan(low) and np.isnan(high) and "only malignant" in note


def test_corrected_t_test_against_the_formula():
    from scipy.stats import t

    from mmdlr.evaluate import corrected_t_test

    differences = np.array([0.02, 0.05, -0.01, 0.03, 0.04])
    ratio = 1 / 4
    result = corrected_t_test(differences, ratio)
    se = np.sqrt((1 / 5 + ratio) * differences.var(ddof=1))
    assert result.mean == pytest.approx(differences.mean())
    assert result.p_value == pytest.approx(2 * t.sf(differences.mean() / se, 4))
    assert result.low == pytest.approx(differences.mean() - t.ppf(0.975, 4) * se)
    assert np.isnan(corrected_t_test([0.1, 0.1, 0.1], ratio).p_value)  # no variance: undefined, not p = 0
