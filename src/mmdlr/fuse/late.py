"""Shared machinery of late fusion: one model per block, each fitted on the patients that have it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn import config_context
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import check_cv, cross_val_predict
from sklearn.utils.validation import check_is_fitted

from mmdlr.evaluate.splits import StratifiedFoldsWithGroups, require_both_classes
from mmdlr.fuse.blocks import block_presence


@dataclass
class BaseFit:
    """A base model fitted on one block's training patients and, if asked for, its out-of-fold probabilities.

    ``fit_base`` makes one; a late-fusion ``fit(..., bases={name: BaseFit})`` then uses it instead of
    fitting that block again (the patients must be the ones it would fit on), so a block's model can be
    shared by its single-modality row, the ensemble and stacking.
    """

    patients: tuple
    estimator: object
    out_of_fold: np.ndarray | None = None


def fit_base(estimator, X_block: pd.DataFrame, y_block, groups=None, cv=None, out_of_fold: bool = False) -> BaseFit:
    """Fit ``clone(estimator)`` on the block's patients; with ``out_of_fold``, also its ``cv``-fold
    out-of-fold malignancy probabilities (:func:`out_of_fold_probabilities`)."""
    fit_params = {} if groups is None else {"groups": groups}
    fitted = clone(estimator).fit(X_block, y_block, **fit_params)
    probabilities = out_of_fold_probabilities(estimator, fitted, X_block, y_block, groups, cv) if out_of_fold else None
    return BaseFit(tuple(X_block.index), fitted, probabilities)


def out_of_fold_probabilities(estimator, fitted, X, y, groups=None, cv=None) -> np.ndarray:
    """Each patient's malignancy probability from ``estimator`` fitted on the other ``cv`` folds (grouped
    when ``groups`` is given); ``fitted`` is ``estimator`` already fitted on all of ``X``.

    For a model search (``fitted.best_estimator_``) the model of each fold is the candidate the search chose,
    refitted there: ``cv`` fits instead of ``cv`` searches. With the search's own inner splits these are the
    inner-CV predictions its choice was made on, so they are as optimistic as its inner-CV score; both stay
    inside the training data they were computed on (an outer fold's), so no test patient is touched. A
    :class:`~mmdlr.classify.search.PreprocessOnceSearchCV` keeps those predictions (``out_of_fold_``): on the same
    splits they are taken from it instead of fitted again.
    """
    chosen = getattr(fitted, "best_estimator_", None)
    if chosen is None:
        params = {} if groups is None else {"groups": groups}
        return cross_val_predict(clone(estimator), X, y, groups=groups, cv=cv, method="predict_proba",
                                 params=params)[:, 1]
    kept = getattr(fitted, "out_of_fold_", None)
    if kept is not None and _same_splits(cv, fitted.cv, X, y, groups):
        return kept
    candidate = clone(chosen)
    if "memory" in candidate.get_params(deep=False):
        candidate.set_params(memory=None)  # a model search's fit cache lives only while the search fits
    with config_context(enable_metadata_routing=True):  # groups reach the folds and the steps that request them
        return cross_val_predict(candidate, X, y, cv=cv, method="predict_proba",
                                 params={} if groups is None else {"groups": groups})[:, 1]


def _same_splits(cv, other, X, y, groups) -> bool:
    """Whether splitters ``cv`` and ``other`` split (X, y, groups) into the same folds."""
    first, second = (list(check_cv(splitter, y, classifier=True).split(X, y, groups)) for splitter in (cv, other))
    return len(first) == len(second) and all(
        np.array_equal(a_train, b_train) and np.array_equal(a_test, b_test)
        for (a_train, a_test), (b_train, b_test) in zip(first, second))


class LateFusion(ClassifierMixin, BaseEstimator):
    """Base class. ``estimators`` is a list of ``(block name, estimator)``; ``blocks`` maps each name to
    its columns. Inputs are DataFrames holding (at least) all blocks' columns, labels are 0/1.

    When ``groups`` is given to ``fit``, it is passed on to every base estimator's ``fit`` (a
    :class:`~sklearn.model_selection.GridSearchCV` uses it to keep groups within one inner fold).
    ``fit(..., bases={name: BaseFit})`` reuses base models already fitted (by :func:`fit_base`) on
    exactly the patients of ``X`` that have the block.
    """

    def __init__(self, estimators: Sequence[tuple[str, object]], blocks: Mapping[str, Sequence[str]],
                 cv: int = 3, random_state: int = 0):
        self.estimators = estimators
        self.blocks = blocks
        self.cv = cv
        self.random_state = random_state

    def _splitter(self):
        return StratifiedFoldsWithGroups(self.cv, self.random_state) if isinstance(self.cv, int) else self.cv

    def _validate(self, X, y=None, groups=None):
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"{type(self).__name__} needs a pandas DataFrame with the blocks' columns")
        names = [name for name, _ in self.estimators]
        if sorted(names) != sorted(self.blocks):
            raise ValueError(f"estimator names {names} must match block names {sorted(self.blocks)}")
        missing = [column for columns in self.blocks.values() for column in columns if column not in X.columns]
        if missing:
            raise ValueError(f"input lacks {len(missing)} block column(s), e.g. {missing[:3]}")
        if y is None:
            return X
        y = np.asarray(y).astype(int)
        return X, y, None if groups is None else np.asarray(groups)

    def _block_data(self, X, y, groups, name):
        """Patients with block ``name``: (X_block, y_block, fit params with their groups, row mask)."""
        rows = block_presence(X, {name: self.blocks[name]})[name].to_numpy()
        require_both_classes(y[rows], f"{type(self).__name__} block {name!r}")
        fit_params = {} if groups is None else {"groups": groups[rows]}
        return X.loc[rows, list(self.blocks[name])], y[rows], fit_params, rows

    def _base(self, name, estimator, X, y, groups, bases, out_of_fold: bool) -> tuple[BaseFit, tuple]:
        """Block ``name``'s fitted base model (from ``bases`` or fitted now) and its :meth:`_block_data`."""
        block_data = X_block, y_block, fit_params, _ = self._block_data(X, y, groups, name)
        given = (bases or {}).get(name)
        if given is None or (out_of_fold and given.out_of_fold is None):
            fitted = fit_base(estimator, X_block, y_block, fit_params.get("groups"), self._splitter(), out_of_fold)
            return fitted, block_data
        if given.patients != tuple(X_block.index):
            raise ValueError(f"base model of block {name!r} was fitted on other patients than this fit's")
        return given, block_data

    def used_blocks(self, X: pd.DataFrame) -> pd.DataFrame:
        """Boolean frame (patients x blocks): which base models contribute to each patient's output."""
        check_is_fitted(self, "estimators_")
        return block_presence(self._validate(X), {name: self.blocks[name] for name in self.estimators_})

    def base_probabilities(self, X: pd.DataFrame) -> pd.DataFrame:
        """Malignancy probability of every base model (columns) per patient; NaN where the block is missing."""
        used = self.used_blocks(X)
        if not used.any(axis=1).all():
            empty = list(used.index[~used.any(axis=1)][:3])
            raise ValueError(f"patients without any modality of this model, e.g. {empty}")
        probabilities = pd.DataFrame(np.nan, index=X.index, columns=list(self.estimators_))
        for name, estimator in self.estimators_.items():
            rows = used[name].to_numpy()
            if rows.any():
                probabilities.loc[rows, name] = estimator.predict_proba(X.loc[rows, list(self.blocks[name])])[:, 1]
        return probabilities

    def predict(self, X):
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)
