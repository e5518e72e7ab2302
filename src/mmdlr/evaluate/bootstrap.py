"""Seeded BCa bootstrap over groups of patients, class-stratified (scipy.stats.bootstrap).

Groups (e.g. duplicate images of one lesion) are drawn with replacement, so correlated patients leave
or enter a resample together (the cluster bootstrap; Davison & Hinkley 1997, section 3.8). Groups that
hold a malignant case and groups that do not are resampled separately, as two samples, so the class
balance stays about fixed. The interval is BCa (Efron 1987, JASA 82:171–185).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import DegenerateDataWarning, bootstrap

from mmdlr.evaluate.interval import NAN, Interval


def _weighted_brier(y_true: np.ndarray, probability: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Brier score of each weight row (a patient drawn k times has weight k)."""
    return weights @ (probability - y_true) ** 2 / weights.sum(axis=1)


def _weighted_auc(y_true: np.ndarray, probability: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of each weight row: weighted share of (malignant, benign) pairs ranked right."""
    positive = y_true == 1
    wins = probability[positive][:, None] > probability[~positive][None, :]
    ties = probability[positive][:, None] == probability[~positive][None, :]
    w_pos, w_neg = weights[:, positive], weights[:, ~positive]
    return ((w_pos @ (wins + 0.5 * ties)) * w_neg).sum(axis=1) / (w_pos.sum(axis=1) * w_neg.sum(axis=1))


BOOTSTRAP_STATISTICS = {"auc": _weighted_auc, "brier": _weighted_brier}


def group_bootstrap_ci(y_true, probability, groups=None, metric: str = "brier", n_boot: int = 2000,
                       seed: int = 42, alpha: float = 0.05) -> Interval:
    """BCa (1 - alpha) interval of ``metric`` ("auc" or "brier") resampling ``groups`` (one per patient;
    None: every patient its own group), stratified by whether a group holds a malignant case.

    NaN with the reason when a stratum has fewer than 2 groups or every resample gives the same value.
    """
    y_true = np.asarray(y_true).astype(int)
    probability = np.asarray(probability, dtype=float)
    codes, group_of_patient = np.unique(np.arange(len(y_true)) if groups is None else np.asarray(groups),
                                        return_inverse=True)
    malignant_group = np.zeros(len(codes), bool)
    malignant_group[group_of_patient[y_true == 1]] = True
    strata = [np.flatnonzero(malignant_group), np.flatnonzero(~malignant_group)]
    if min(len(stratum) for stratum in strata) < 2:
        return Interval(NAN, NAN, f"{metric} CI undefined: bootstrap needs 2 groups with and 2 without a "
                                  f"malignant case ({len(strata[0])}, {len(strata[1])})")
    statistic = BOOTSTRAP_STATISTICS[metric]

    def resampled_statistic(*drawn_groups: np.ndarray, axis: int = -1) -> np.ndarray:
        batch = np.broadcast_shapes(*(drawn.shape[:-1] for drawn in drawn_groups))
        drawn = np.concatenate([np.broadcast_to(d, batch + d.shape[-1:]) for d in drawn_groups], axis=-1)
        drawn = drawn.reshape(-1, drawn.shape[-1])
        offsets = len(codes) * np.arange(len(drawn))[:, None]
        counts = np.bincount((drawn + offsets).ravel(), minlength=len(drawn) * len(codes))
        weights = counts.reshape(len(drawn), len(codes))[:, group_of_patient]
        return statistic(y_true, probability, weights).reshape(batch)

    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):  # degenerate: NaN below
        warnings.simplefilter("ignore", DegenerateDataWarning)
        result = bootstrap(strata, resampled_statistic, n_resamples=n_boot, confidence_level=1 - alpha,
                           method="BCa", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    if np.isnan(low) or np.isnan(high):
        return Interval(NAN, NAN, f"{metric} CI undefined: every bootstrap resample gives the same value")
    return Interval(float(low), float(high))
