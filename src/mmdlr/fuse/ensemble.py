"""Late fusion by an accuracy-weighted average of per-modality probabilities (paper section 2.5)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import softmax
from sklearn.base import clone
from sklearn.model_selection import cross_val_score

from mmdlr.fuse.late import LateFusion


class AccuracyWeightedEnsemble(LateFusion):
    """Average of the base models' probabilities weighted by softmax(inner-CV accuracies).

    A base model's inner-CV accuracy is read from its grid search (``cv_results_["mean_test_accuracy"]``
    at ``best_index_``) or, for any other estimator, measured by ``cv``-fold cross-validation on the
    training data. For a patient lacking some modalities the weights of the present ones are
    renormalised; :meth:`used_blocks` says which models contributed.
    """

    def fit(self, X, y, groups=None, bases=None):
        X, y, groups = self._validate(X, y, groups)
        self.estimators_, accuracies = {}, {}
        for name, estimator in self.estimators:
            base, (X_block, y_block, fit_params, _) = self._base(name, estimator, X, y, groups, bases, False)
            self.estimators_[name] = base.estimator
            accuracies[name] = self._inner_accuracy(estimator, base.estimator, X_block, y_block,
                                                    fit_params.get("groups"))
        self.accuracies_ = pd.Series(accuracies, dtype=float)
        self.weights_ = pd.Series(softmax(self.accuracies_.to_numpy()), index=self.accuracies_.index)
        self.classes_ = np.array([0, 1])
        return self

    def _inner_accuracy(self, estimator, fitted, X, y, groups) -> float:
        results = getattr(fitted, "cv_results_", None)
        if results is not None and "mean_test_accuracy" in results:
            return float(results["mean_test_accuracy"][fitted.best_index_])
        return float(cross_val_score(clone(estimator), X, y, groups=groups, cv=self._splitter(),
                                     scoring="accuracy").mean())

    def predict_proba(self, X):
        probabilities = self.base_probabilities(X)
        weights = probabilities.notna() * self.weights_
        malignant = (probabilities.fillna(0.0) * weights).sum(axis=1) / weights.sum(axis=1)
        return np.column_stack([1 - malignant.to_numpy(), malignant.to_numpy()])
