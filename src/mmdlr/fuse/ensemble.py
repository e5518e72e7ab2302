"""Late fusion by an accuracy-weighted average of per-modality probabilities (paper section 2.5)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.special import softmax
from sklearn.base import clone
from sklearn.model_selection import cross_val_score

from mmdlr.fuse.late import LateFusion


class AccuracyWeightedEnsemble(LateFusion):
    """Average of the base models' probabilities weighted by ``softmax(accuracies / temperature)``.

    ``temperature=1`` is the paper's literal definition ("accuracy-weighted average integration based on
    softmax normalisation weighting", section 2.5). With accuracies in [0, 1] it is close to uniform: two
    models at 0.6 and 0.9 get weights 0.43 and 0.57. A smaller temperature sharpens the weights towards the
    most accurate model (0.1: 0.05 and 0.95); a larger one flattens them towards the plain average.

    A base model's inner-CV accuracy is read from its grid search (``cv_results_["mean_test_accuracy"]``
    at ``best_index_``) or, for any other estimator, measured by ``cv``-fold cross-validation on the
    training data. For a patient lacking some modalities the weights of the present ones are
    renormalised; :meth:`used_blocks` says which models contributed.
    """

    def __init__(self, estimators: Sequence[tuple[str, object]], blocks: Mapping[str, Sequence[str]],
                 cv: int = 3, random_state: int = 0, temperature: float = 1.0):
        super().__init__(estimators, blocks, cv, random_state)
        self.temperature = temperature

    def fit(self, X, y, groups=None, bases=None):
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        X, y, groups = self._validate(X, y, groups)
        self.estimators_, accuracies = {}, {}
        for name, estimator in self.estimators:
            base, (X_block, y_block, fit_params, _) = self._base(name, estimator, X, y, groups, bases, False)
            self.estimators_[name] = base.estimator
            accuracies[name] = self._inner_accuracy(estimator, base.estimator, X_block, y_block,
                                                    fit_params.get("groups"))
        self.accuracies_ = pd.Series(accuracies, dtype=float)
        self.weights_ = pd.Series(softmax(self.accuracies_.to_numpy() / self.temperature), index=self.accuracies_.index)
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
