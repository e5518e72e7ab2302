"""Nadeau-Bengio corrected resampled t interval for the mean of cross-validation fold scores."""

from __future__ import annotations

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
