"""PCA whose number of components is clipped to what the training fold can support."""

from __future__ import annotations

from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted, validate_data


class ClippedPCA(TransformerMixin, BaseEstimator):
    """``PCA(min(n_components, n_samples - 1, n_features))`` fitted on the training data only."""

    def __init__(self, n_components: int = 32, random_state: int = 0):
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, X, y=None):
        X = validate_data(self, X)
        self.n_components_ = max(1, min(self.n_components, X.shape[0] - 1, X.shape[1]))
        self.pca_ = PCA(n_components=self.n_components_, random_state=self.random_state).fit(X)
        return self

    def transform(self, X):
        check_is_fitted(self, "pca_")
        return self.pca_.transform(validate_data(self, X, reset=False))
