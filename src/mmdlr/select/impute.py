"""Median imputation that also treats +/-inf as missing."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.impute import SimpleImputer
from sklearn.utils.validation import check_is_fitted


class FiniteMedianImputer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Replace NaN and +/-inf by the training median of each column (0 for all-missing columns)."""

    def fit(self, X, y=None):
        self.imputer_ = SimpleImputer(strategy="median", keep_empty_features=True).fit(_inf_to_nan(X))
        self.n_features_in_ = self.imputer_.n_features_in_
        if hasattr(X, "columns"):  # output names for the steps after it (pandas output, ComBat, the report)
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def transform(self, X):
        check_is_fitted(self, "imputer_")
        return self.imputer_.transform(_inf_to_nan(X))


def _inf_to_nan(X) -> np.ndarray:
    values = np.asarray(X, dtype=float).copy()
    values[np.isinf(values)] = np.nan
    return values
