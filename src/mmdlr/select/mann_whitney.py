"""Univariate filter: keep features that differ between the two classes (Mann-Whitney U test)."""

from __future__ import annotations

import numpy as np
from scipy.stats import mannwhitneyu
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.validation import check_is_fitted, validate_data


def mann_whitney_pvalues(X, y) -> np.ndarray:
    """Two-sided Mann-Whitney U p-value of every column of ``X`` between ``y == 1`` and ``y == 0``.

    Columns that are constant in both classes get p = 1.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y)
    with np.errstate(invalid="ignore", divide="ignore"):
        pvalues = mannwhitneyu(X[y == 1], X[y == 0], axis=0).pvalue
    return np.nan_to_num(np.atleast_1d(pvalues), nan=1.0)


class MannWhitneyFilter(SelectorMixin, BaseEstimator):
    """Keep features with Mann-Whitney p < ``p_threshold``; if none pass, keep the ``fallback_k`` smallest p."""

    def __init__(self, p_threshold: float = 0.05, fallback_k: int = 10):
        self.p_threshold = p_threshold
        self.fallback_k = fallback_k

    def fit(self, X, y):
        X, y = validate_data(self, X, y)
        self.pvalues_ = mann_whitney_pvalues(X, y)
        support = self.pvalues_ < self.p_threshold
        if not support.any():
            support[np.argsort(self.pvalues_, kind="stable")[: self.fallback_k]] = True
        self.support_ = support
        return self

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_
