"""DeLong AUC variance and paired test (fast algorithm of Sun & Xu 2014); the AUC interval is in
:mod:`mmdlr.evaluate.interval`."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm, rankdata


def _structural_components(y_true, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong's V10 (per positive) and V01 (per negative) components for k score rows."""
    y_true = np.asarray(y_true).astype(int)
    positives, negatives = scores[:, y_true == 1], scores[:, y_true == 0]
    m, n = positives.shape[1], negatives.shape[1]
    if m == 0 or n == 0:
        raise ValueError("DeLong needs at least one positive and one negative case")
    rank_positives = rankdata(positives, axis=1)
    rank_negatives = rankdata(negatives, axis=1)
    rank_all = rankdata(np.hstack([positives, negatives]), axis=1)
    aucs = (rank_all[:, :m].sum(axis=1) / m - (m + 1) / 2) / n
    v10 = (rank_all[:, :m] - rank_positives) / n
    v01 = 1 - (rank_all[:, m:] - rank_negatives) / m
    return aucs, v10, v01


def delong_covariance(y_true, *scores) -> tuple[np.ndarray, np.ndarray]:
    """AUC of each score vector and their DeLong covariance matrix (k x k)."""
    stacked = np.vstack([np.asarray(s, dtype=float) for s in scores])
    aucs, v10, v01 = _structural_components(y_true, stacked)
    m, n = v10.shape[1], v01.shape[1]
    covariance = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, covariance


def delong_auc_variance(y_true, score) -> tuple[float, float]:
    """(AUC, DeLong variance of the AUC)."""
    aucs, covariance = delong_covariance(y_true, score)
    return float(aucs[0]), float(covariance[0, 0])


def delong_test(y_true, score_a, score_b) -> tuple[float, float]:
    """Paired two-sided DeLong test of AUC(score_a) == AUC(score_b) on the same cases: (z, p).

    Identical AUCs with zero variance of the difference give z = 0, p = 1.
    """
    aucs, covariance = delong_covariance(y_true, score_a, score_b)
    difference = aucs[0] - aucs[1]
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    if variance <= 1e-15:
        return (0.0, 1.0) if abs(difference) < 1e-12 else (float(np.sign(difference) * np.inf), 0.0)
    z = difference / np.sqrt(variance)
    return float(z), float(2 * norm.sf(abs(z)))


def delong_unpaired_test(y_a, score_a, y_b, score_b) -> tuple[float, float]:
    """Unpaired two-sided DeLong test of AUC_a == AUC_b on two independent cohorts (e.g. internal and external
    validation of one model): z = (AUC_a - AUC_b) / sqrt(V_a + V_b), each V the DeLong variance within its own
    cohort (pROC's ``roc.test(..., paired = FALSE, method = "delong")``). Returns (z, p)."""
    auc_a, variance_a = delong_auc_variance(y_a, score_a)
    auc_b, variance_b = delong_auc_variance(y_b, score_b)
    variance = variance_a + variance_b
    if variance <= 1e-15:
        return (0.0, 1.0) if abs(auc_a - auc_b) < 1e-12 else (float(np.sign(auc_a - auc_b) * np.inf), 0.0)
    z = (auc_a - auc_b) / np.sqrt(variance)
    return float(z), float(2 * norm.sf(abs(z)))
