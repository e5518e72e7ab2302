"""Redundancy filter: of two strongly rank-correlated features keep the more class-significant one."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from mmdlr.select.mann_whitney import mann_whitney_pvalues


class SpearmanRedundancyFilter(SelectorMixin, BaseEstimator):
    """Drop a feature when |Spearman rho| > ``rho_threshold`` with a more significant kept feature.

    Features are visited from the smallest Mann-Whitney p-value upward, so of every correlated pair
    the one that separates the classes better survives.
    """

    def __init__(self, rho_threshold: float = 0.9):
        self.rho_threshold = rho_threshold

    def fit(self, X, y):
        X, y = validate_data(self, X, y)
        n_features = X.shape[1]
        if n_features == 1:
            self.support_ = np.ones(1, dtype=bool)
            return self
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = spearmanr(X).statistic
        if n_features == 2:  # scipy returns the single coefficient for two columns
            rho = np.array([[1.0, rho], [rho, 1.0]])
        rho = np.nan_to_num(np.abs(rho), nan=0.0)  # constant columns correlate with nothing
        support = np.zeros(n_features, dtype=bool)
        for feature in np.argsort(mann_whitney_pvalues(X, y), kind="stable"):
            if not (rho[feature, support] > self.rho_threshold).any():
                support[feature] = True
        self.support_ = support
        return self

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_
