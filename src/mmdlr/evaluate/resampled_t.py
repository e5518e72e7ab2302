"""Nadeau-Bengio corrected resampled t interval for the mean of cross-validation fold scores."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.stats import t


def corrected_t_ci(fold_values, test_train_ratio: float, alpha: float = 0.05) -> tuple[float, float, float]:
    """(mean, low, high) of fold scores with variance inflated for overlapping training sets.

    Var = (1/J + n_test/n_train) * s^2 over the J fold scores (Nadeau & Bengio 2003); for K-fold CV
    ``test_train_ratio`` is 1 / (K - 1). NaN fold scores (e.g. a one-class test fold) are ignored.
    Bounds are NaN with one fold score, or when all are equal (e.g. accuracy 1.0 in every fold): a
    zero-width interval would claim a certainty the folds cannot give.
    """
    values = np.asarray(fold_values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if len(values) == 1 or np.ptp(values) == 0:
        return mean, float("nan"), float("nan")
    half_width = t.ppf(1 - alpha / 2, len(values) - 1) * np.sqrt(
        (1 / len(values) + test_train_ratio) * values.var(ddof=1))
    return mean, float(mean - half_width), float(mean + half_width)


class CorrectedTTest(NamedTuple):
    mean: float
    low: float
    high: float
    p_value: float


def corrected_t_test(fold_differences, test_train_ratio: float, alpha: float = 0.05) -> CorrectedTTest:
    """Paired comparison of two models by their fold-wise score differences: the mean difference, its
    corrected resampled t interval and the two-sided p-value of t = mean / sqrt((1/J + ratio) s^2) on J - 1
    degrees of freedom (Nadeau & Bengio 2003). NaN where the interval is undefined (see
    :func:`corrected_t_ci`)."""
    values = np.asarray(fold_differences, dtype=float)
    values = values[~np.isnan(values)]
    mean, low, high = corrected_t_ci(values, test_train_ratio, alpha)
    if np.isnan(low):
        return CorrectedTTest(mean, low, high, float("nan"))
    statistic = mean / np.sqrt((1 / len(values) + test_train_ratio) * values.var(ddof=1))
    return CorrectedTTest(mean, low, high, float(2 * t.sf(abs(statistic), len(values) - 1)))
