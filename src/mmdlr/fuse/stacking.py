"""Late fusion by stacking: a meta-learner on the base models' out-of-fold probabilities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from mmdlr.fuse.late import LateFusion


class StackingFusion(LateFusion):
    """Meta-learner trained on out-of-fold base probabilities, never on in-sample fits.

    ``fit``: for every block, ``cross_val_predict`` (``cv`` folds, grouped when ``groups`` is given) on the
    training patients with that modality gives the meta-features (``meta_features_``); the base models
    are then refit on all those patients for prediction. A missing modality's probability is set to
    ``missing_probability`` (uninformative 0.5 by default) for the meta-learner, which defaults to
    logistic regression. ``bases`` (see :class:`~mmdlr.fuse.late.LateFusion`) must hold the out-of-fold
    probabilities as well.
    """

    def __init__(self, estimators: Sequence[tuple[str, object]], blocks: Mapping[str, Sequence[str]],
                 meta_estimator=None, cv: int = 3, random_state: int = 0, missing_probability: float = 0.5):
        super().__init__(estimators, blocks, cv=cv, random_state=random_state)
        self.meta_estimator = meta_estimator
        self.missing_probability = missing_probability

    def fit(self, X, y, groups=None, bases=None):
        X, y, groups = self._validate(X, y, groups)
        out_of_fold = pd.DataFrame(np.nan, index=X.index, columns=[name for name, _ in self.estimators])
        self.estimators_ = {}
        for name, estimator in self.estimators:
            base, (*_, rows) = self._base(name, estimator, X, y, groups, bases, out_of_fold=True)
            out_of_fold.loc[rows, name] = base.out_of_fold
            self.estimators_[name] = base.estimator
        self.meta_features_ = out_of_fold.fillna(self.missing_probability)
        meta_params = {} if groups is None else {"groups": groups}
        meta = LogisticRegression() if self.meta_estimator is None else clone(self.meta_estimator)
        self.meta_estimator_ = meta.fit(self.meta_features_, y, **meta_params)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        return self.meta_estimator_.predict_proba(self.base_probabilities(X).fillna(self.missing_probability))
