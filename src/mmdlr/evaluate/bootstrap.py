"""Seeded, class-stratified percentile bootstrap of the threshold metrics and the AUC."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

BOOTSTRAP_METRICS = ("accuracy", "auc", "sensitivity", "specificity")


def bootstrap_metrics(y_true, probability, threshold: float = 0.5, n_boot: int = 2000, seed: int = 42) -> pd.DataFrame:
    """Metrics of ``n_boot`` resamples drawn with replacement within each class (class sizes fixed).

    AUC is the Mann-Whitney U of the resample divided by (positives x negatives).
    """
    y_true = np.asarray(y_true).astype(int)
    probability = np.asarray(probability, dtype=float)
    positives, negatives = probability[y_true == 1], probability[y_true == 0]
    m, n = len(positives), len(negatives)
    rng = np.random.default_rng(seed)
    pos = positives[rng.integers(0, m, size=(n_boot, m))] if m else np.empty((n_boot, 0))
    neg = negatives[rng.integers(0, n, size=(n_boot, n))] if n else np.empty((n_boot, 0))
    true_positives, true_negatives = (pos >= threshold).sum(axis=1), (neg < threshold).sum(axis=1)
    nan = np.full(n_boot, np.nan)
    auc = mannwhitneyu(pos, neg, axis=1, method="asymptotic").statistic / (m * n) if m and n else nan
    return pd.DataFrame({
        "accuracy": (true_positives + true_negatives) / (m + n),
        "auc": auc,
        "sensitivity": true_positives / m if m else nan,
        "specificity": true_negatives / n if n else nan,
    })


def percentile_ci(values, alpha: float = 0.05) -> tuple[float, float]:
    """(low, high) percentile interval of ``values`` ignoring NaN; (NaN, NaN) if all are NaN."""
    values = np.asarray(values, dtype=float)
    if np.isnan(values).all():
        return float("nan"), float("nan")
    low, high = np.nanpercentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def bootstrap_ci(y_true, probability, threshold: float = 0.5, n_boot: int = 2000, seed: int = 42,
                 alpha: float = 0.05) -> dict[str, tuple[float, float]]:
    """Percentile (1 - alpha) interval of every metric in ``BOOTSTRAP_METRICS``."""
    resampled = bootstrap_metrics(y_true, probability, threshold, n_boot, seed)
    return {metric: percentile_ci(resampled[metric], alpha) for metric in BOOTSTRAP_METRICS}
