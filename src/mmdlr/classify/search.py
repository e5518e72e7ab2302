"""Model choice by inner cross-validation: which of the seven classifiers, with which hyper-parameters."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar

import numpy as np
from sklearn import config_context
from sklearn.base import clone
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import GridSearchCV, ParameterGrid, check_cv
from sklearn.pipeline import Pipeline

from mmdlr.classify.cache import FitCache
from mmdlr.classify.zoo import DISPLAY_NAMES, PlattScaledSVC, classifier_key, make_classifier
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
    """:class:`~sklearn.model_selection.GridSearchCV` over a ``GroupsPipeline(memory=FitCache())``, with screening.

    Every candidate has the same pre-processing parameters (only ``clf`` and its hyper-parameters vary),
    so the pre-processing steps are fitted once per inner training fold (and once for the refit) and
    shared by all candidates; the result is identical to fitting them per candidate. The cache is
    emptied when ``fit`` returns.

    ``fit`` runs with scikit-learn metadata routing enabled, so ``groups`` reach the inner split (the
    ``cv`` requests them) and every step that requests them: nothing of one group is ever on both sides
    of an inner split, the LASSO penalty's and the SVM's Platt-scaling folds included.

    With ``screen_margin`` (an AUC difference) the search screens the costly candidates first, in the
    manner of successive halving: a tree ensemble (a classifier with ``n_estimators``) is scored with
    ``screen_share`` of its trees, and the ``screen_keep`` best of those whose screening AUC comes within
    ``screen_margin`` of the best first-round AUC (any candidate's) are scored again in full; an SVM is scored
    uncalibrated (same AUC, its accuracy that of its ``predict``) and calibrated in the refit only. The best fully
    scored candidate is chosen. ``cv_results_`` holds every scoring, with ``screened`` (scored in its cheaper form),
    ``final`` (a candidate of the choice) and ``candidate`` (its index in the grid). ``screen_margin=None`` scores
    every candidate in full.

    ``out_of_fold_`` keeps the chosen candidate's malignancy probability for every training row from its fit on
    the other inner folds: the predictions its inner-CV score was computed from (stacking's meta-features), or
    None when the choice was scored in a screened form or a fit failed.
    """

    def __init__(self, estimator, param_grid, *, scoring=None, refit=True, cv=None, n_jobs=None,
                 screen_margin: float | None = None, screen_share: float = 0.125, screen_keep: int = 3):
        super().__init__(estimator, param_grid, scoring=scoring, refit=refit, cv=cv, n_jobs=n_jobs)
        self.screen_margin = screen_margin
        self.screen_share = screen_share
        self.screen_keep = screen_keep

    def __setstate__(self, state):
        """Model files saved before screening existed hold plain grid searches."""
        super().__setstate__({"screen_margin": None, "screen_share": 0.125, "screen_keep": 3, **state})

    def fit(self, X, y=None, **params):
        recording = _SCORED.set([])
        try:
            with config_context(enable_metadata_routing=True):
                super().fit(X, y, **params)
                if self.cv_results_["screened"][self.best_index_]:
                    self._refit_in_full(X, y, params)
                self.out_of_fold_ = self._chosen_predictions(_SCORED.get(), X, y, params.get("groups"))
                return self
        finally:
            _SCORED.reset(recording)
            self.estimator.memory.clear()

    def _chosen_predictions(self, scored: list[np.ndarray], X, y, groups) -> np.ndarray | None:
        """The chosen candidate's test-split predictions, out of the scorer's calls (one per candidate and split, in
        the order the search made them: candidates in ``cv_results_`` order, splits within), as one column."""
        splits = list(check_cv(self.cv, y, classifier=True).split(X, y, groups))
        if self.n_jobs != 1 or len(scored) != len(self.cv_results_["params"]) * len(splits) \
                or self.cv_results_["screened"][self.best_index_]:
            return None
        chosen = scored[self.best_index_ * len(splits):(self.best_index_ + 1) * len(splits)]
        out_of_fold = np.full(len(y), np.nan)
        for (_, test), predictions in zip(splits, chosen):
            out_of_fold[test] = predictions
        return out_of_fold

    def _run_search(self, evaluate_candidates):
        candidates = list(ParameterGrid(self.param_grid))
        if self.screen_margin is None:
            evaluate_candidates(candidates, more_results=_marks(range(len(candidates)), False, True))
            return
        screening = [self._screening_form(params) for params in candidates]
        ensembles = [index for index, params in enumerate(candidates) if "clf__n_estimators" in screening[index]]
        results = evaluate_candidates(
            [form or params for form, params in zip(screening, candidates)],
            more_results={"candidate": list(range(len(candidates))), "screened": [bool(form) for form in screening],
                          "final": [index not in ensembles for index in range(len(candidates))]})
        scores = results["mean_test_auc"]
        if np.isfinite(scores).any():
            within = sorted((index for index in ensembles if scores[index] >= np.nanmax(scores) - self.screen_margin),
                            key=lambda index: -scores[index])  # a stable sort: ties in grid order
        else:  # no score to screen by (an inner test split of one class): the first ones, as a plain search would
            within = ensembles
        survivors = sorted(within[:self.screen_keep])
        if survivors:
            evaluate_candidates([candidates[index] for index in survivors],
                                more_results=_marks(survivors, False, True))

    def _screening_form(self, params: dict) -> dict:
        """The cheaper form a candidate is first scored in ({} when it has none)."""
        classifier = params["clf"]
        if isinstance(classifier, PlattScaledSVC):
            return {**params, "clf__calibrate": False}
        n_estimators = params.get("clf__n_estimators", classifier.get_params().get("n_estimators"))
        if n_estimators is None:
            return {}
        return {**params, "clf__n_estimators": max(1, round(n_estimators * self.screen_share))}

    @staticmethod
    def _select_best_index(refit, refit_metric, results):
        """The best fully scored candidate; ties go to the first in grid order, as in a plain grid search."""
        final = np.flatnonzero(results["final"])
        ranks = results[f"rank_test_{refit_metric}"][final]
        tied = final[ranks == ranks.min()]
        return int(tied[np.argmin(np.asarray(results["candidate"])[tied])])

    def _refit_in_full(self, X, y, params) -> None:
        """Refit the chosen candidate in its full form (a calibrated SVM) instead of the form it was scored in."""
        start = time.perf_counter()
        self.best_params_ = {key: value for key, value in self.best_params_.items() if key != "clf__calibrate"}
        self.best_estimator_ = clone(self.estimator).set_params(**clone(self.best_params_, safe=False))
        self.best_estimator_.fit(X, y, **params)
        self.refit_time_ += time.perf_counter() - start


def _marks(candidates, screened: bool, final: bool) -> dict[str, list]:
    """``more_results`` of candidates (grid indices) scored in one form."""
    candidates = list(candidates)
    return {"candidate": candidates, "screened": [screened] * len(candidates), "final": [final] * len(candidates)}


# the scores auc_and_accuracy computed, in call order, while a PreprocessOnceSearchCV.fit in this thread records them
_SCORED: ContextVar[list | None] = ContextVar("scored", default=None)


def auc_and_accuracy(estimator, X, y) -> dict[str, float]:
    """A candidate's inner-CV scores from one prediction call: ROC AUC of ``predict_proba`` (of
    ``decision_function`` for an uncalibrated SVM, which has none), and accuracy of the class with the larger
    probability (what ``predict`` returns for each of the seven classifiers; an SVM's decision sign)."""
    if hasattr(estimator, "predict_proba"):
        probabilities = estimator.predict_proba(X)
        scores, predicted = probabilities[:, 1], estimator.classes_[np.argmax(probabilities, axis=1)]
    else:
        scores = estimator.decision_function(X)
        predicted = estimator.classes_[(scores > 0).astype(int)]
    recording = _SCORED.get()
    if recording is not None:
        recording.append(scores)
    return {"auc": roc_auc_score(y, scores), "accuracy": accuracy_score(y, predicted)}


def model_search(
    steps: Sequence[tuple[str, object]],
    classifiers: Mapping[str, Mapping[str, list]],
    inner_folds: int = 3,
    random_state: int = 0,
    screen_margin: float | None = None,
    screen_share: float = 0.125,
    screen_keep: int = 3,
) -> PreprocessOnceSearchCV:
    """Grid search over ``Pipeline(steps + [("clf", classifier)])`` for every classifier and its grid.

    The best candidate is chosen by inner-CV ROC AUC (refit on all training data); the inner-CV
    accuracy of every candidate is recorded as well (``cv_results_["mean_test_accuracy"]``). Pass
    ``groups=`` to ``fit`` to keep patients of one group on one side of every inner split (the search's,
    and those inside the steps). The pre-processing ``steps`` are fitted once per inner fold and shared
    by all candidates; ``screen_margin``, ``screen_share`` and ``screen_keep`` screen the costly candidates
    first (:class:`PreprocessOnceSearchCV`).
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
        screen_margin=screen_margin, screen_share=screen_share, screen_keep=screen_keep,
    )


def chosen_classifier(search: GridSearchCV) -> str:
    """Display name (``SVM``, ``LightGBM``, ...) of the classifier a fitted :func:`model_search` chose."""
    return DISPLAY_NAMES[classifier_key(search.best_estimator_.named_steps["clf"])]
