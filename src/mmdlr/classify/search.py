"""Model choice by inner cross-validation: which of the seven classifiers, with which hyper-parameters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn import config_context
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from mmdlr.classify.cache import FitCache
from mmdlr.classify.zoo import DISPLAY_NAMES, classifier_key, make_classifier
from mmdlr.evaluate.splits import StratifiedFoldsWithGroups


class GroupsPipeline(Pipeline):
    """``Pipeline`` that accepts ``groups`` in ``fit`` under metadata routing, whatever its classifier.

    A grid search routes one set of fit parameters, worked out from its first candidate, to every
    candidate: without this, a candidate whose steps request no ``groups`` would refuse them, and a search
    whose first candidate requests none would hand none to the steps that do. The pipeline accepts them
    and routes them on to the steps that request them (:class:`~mmdlr.select.LassoSelector`,
    :class:`~mmdlr.classify.zoo.PlattScaledSVC`).
    """

    __metadata_request__fit = {"groups": True}

    def get_metadata_routing(self):
        return super().get_metadata_routing().add_self_request(self)


class PreprocessOnceSearchCV(GridSearchCV):
    """:class:`~sklearn.model_selection.GridSearchCV` over a ``GroupsPipeline(memory=FitCache())``.

    Every candidate has the same pre-processing parameters (only ``clf`` and its hyper-parameters vary),
    so the pre-processing steps are fitted once per inner training fold (and once for the refit) and
    shared by all candidates; the result is identical to fitting them per candidate. The cache is
    emptied when ``fit`` returns.

    ``fit`` runs with scikit-learn metadata routing enabled, so ``groups`` reach the inner split (the
    ``cv`` requests them) and every step that requests them: nothing of one group is ever on both sides
    of an inner split, the LASSO penalty's and the SVM's Platt-scaling folds included.
    """

    def fit(self, X, y=None, **params):
        try:
            with config_context(enable_metadata_routing=True):
                return super().fit(X, y, **params)
        finally:
            self.estimator.memory.clear()


def auc_and_accuracy(estimator, X, y) -> dict[str, float]:
    """A candidate's inner-CV scores from one ``predict_proba`` call: ROC AUC, and accuracy of the class with
    the larger probability (what ``predict`` returns for each of the seven classifiers)."""
    probabilities = estimator.predict_proba(X)
    return {"auc": roc_auc_score(y, probabilities[:, 1]),
            "accuracy": accuracy_score(y, estimator.classes_[np.argmax(probabilities, axis=1)])}


def model_search(
    steps: Sequence[tuple[str, object]],
    classifiers: Mapping[str, Mapping[str, list]],
    inner_folds: int = 3,
    random_state: int = 0,
) -> PreprocessOnceSearchCV:
    """Grid search over ``Pipeline(steps + [("clf", classifier)])`` for every classifier and its grid.

    The best candidate is chosen by inner-CV ROC AUC (refit on all training data); the inner-CV
    accuracy of every candidate is recorded as well (``cv_results_["mean_test_accuracy"]``). Pass
    ``groups=`` to ``fit`` to keep patients of one group on one side of every inner split (the search's,
    and those inside the steps). The pre-processing ``steps`` are fitted once per inner fold and shared
    by all candidates (:class:`PreprocessOnceSearchCV`).
    """
    if not classifiers:
        raise ValueError("model_search needs at least one classifier")
    candidates = [
        {"clf": [make_classifier(name, random_state)], **{f"clf__{key}": list(values) for key, values in grid.items()}}
        for name, grid in classifiers.items()
    ]
    pipeline = GroupsPipeline([*steps, ("clf", candidates[0]["clf"][0])], memory=FitCache())
    return PreprocessOnceSearchCV(
        pipeline, candidates, scoring=auc_and_accuracy, refit="auc",
        cv=StratifiedFoldsWithGroups(inner_folds, random_state=random_state), n_jobs=1,
    )


def chosen_classifier(search: GridSearchCV) -> str:
    """Display name (``SVM``, ``LightGBM``, ...) of the classifier a fitted :func:`model_search` chose."""
    return DISPLAY_NAMES[classifier_key(search.best_estimator_.named_steps["clf"])]
