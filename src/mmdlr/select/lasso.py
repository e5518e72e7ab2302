"""LASSO signature: L1-penalised regression on the 0/1 label with a cross-validated penalty."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.linear_model import Lasso, LassoCV
from sklearn.utils.validation import check_is_fitted, validate_data

from mmdlr.evaluate.splits import StratifiedFoldsWithGroups


class LassoSelector(SelectorMixin, BaseEstimator):
    """Keep features with a non-zero coefficient in ``LassoCV`` (``n_alphas`` penalties, stratified folds).

    The penalty's folds are :class:`~mmdlr.evaluate.StratifiedFoldsWithGroups`: grouped when ``fit`` gets
    ``groups``, which metadata routing hands it by default (a pipeline in a grid search fitted with
    ``groups``). If the chosen penalty zeroes every coefficient, keep the ``fallback_k`` largest |coef|
    at the smallest penalty of the path instead. Expects standardised inputs.
    """

    __metadata_request__fit = {"groups": True}

    def __init__(self, n_alphas: int = 10, cv: int = 3, fallback_k: int = 10, random_state: int = 0):
        self.n_alphas = n_alphas
        self.cv = cv
        self.fallback_k = fallback_k
        self.random_state = random_state

    def fit(self, X, y, groups=None):
        X, y = validate_data(self, X, y)
        y = np.asarray(y, dtype=float)
        folds = StratifiedFoldsWithGroups(self.cv, self.random_state).split(X, y, groups)
        lasso = LassoCV(alphas=self.n_alphas, cv=list(folds), random_state=self.random_state).fit(X, y)
        self.alpha_ = float(lasso.alpha_)
        self.coef_ = lasso.coef_.ravel()
        support = self.coef_ != 0
        if not support.any():
            least_penalised = Lasso(alpha=float(np.min(lasso.alphas_))).fit(X, y)
            support[np.argsort(-np.abs(least_penalised.coef_), kind="stable")[: self.fallback_k]] = True
        self.support_ = support
        return self

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_
