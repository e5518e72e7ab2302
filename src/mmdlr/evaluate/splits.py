"""Train/test protocols: stratified (and grouped) hold-out split and repeated outer folds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.utils.metadata_routing import MetadataRequest


class OneClassFoldError(ValueError):
    """A training fold holds only one class, so no classifier can be fitted on it."""


@dataclass(frozen=True)
class StratifiedFoldsWithGroups:
    """Stratified K-fold that becomes stratified *grouped* K-fold when ``groups`` is passed to ``split``."""

    n_splits: int = 3
    random_state: int = 0

    def split(self, X, y, groups=None):
        if groups is None:
            return StratifiedKFold(self.n_splits, shuffle=True, random_state=self.random_state).split(X, y)
        return StratifiedGroupKFold(self.n_splits, shuffle=True, random_state=self.random_state).split(X, y, groups)

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return self.n_splits

    def get_metadata_routing(self) -> MetadataRequest:
        """Requests ``groups`` for ``split``: under scikit-learn metadata routing a search hands them on."""
        request = MetadataRequest(owner=self)
        request.split.add_request(param="groups", alias=True)
        return request


@dataclass(frozen=True)
class Fold:
    """One train/test partition of patient ids."""

    name: str
    train: tuple[str, ...]
    test: tuple[str, ...]


def patient_groups(groups: pd.Series) -> pd.Series:
    """Group of every patient; a patient without a group forms a group of its own."""
    filled = groups.fillna("").astype(str)
    return filled.where(filled != "", "patient:" + filled.index.astype(str))


def holdout_fold(labels: pd.Series, groups: pd.Series, split: pd.Series, test_size: float = 0.2,
                 seed: int = 42) -> Fold:
    """The paper's fixed train/test split.

    Uses ``split`` (train/test) when every patient has one; otherwise a stratified split of about
    ``test_size`` that never separates patients of one group (first fold of a seeded
    ``StratifiedGroupKFold`` with ``round(1 / test_size)`` folds).
    """
    split = split.reindex(labels.index).fillna("").astype(str).str.strip().str.lower()
    if (split != "").any():
        unknown = sorted(set(split) - {"train", "test"})
        if unknown:
            missing = (split == "").sum()
            raise ValueError(
                f"split column must be 'train' or 'test' for every patient; found {unknown}"
                + (f" ({missing} patient(s) without a split)" if missing else "")
            )
        return Fold("holdout", tuple(split.index[split == "train"]), tuple(split.index[split == "test"]))
    n_splits = max(2, round(1 / test_size))
    splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
    train, test = next(splitter.split(labels.index, labels.to_numpy(), patient_groups(groups).to_numpy()))
    return Fold("holdout", tuple(labels.index[train]), tuple(labels.index[test]))


def repeated_folds(labels: pd.Series, groups: pd.Series, n_splits: int = 5, repeats: int = 3,
                   seed: int = 42) -> list[Fold]:
    """Outer folds of repeated stratified grouped K-fold (repeat r uses seed + r)."""
    group_ids = patient_groups(groups).reindex(labels.index).to_numpy()
    folds = []
    for repeat in range(repeats):
        splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed + repeat)
        for k, (train, test) in enumerate(splitter.split(labels.index, labels.to_numpy(), group_ids)):
            folds.append(Fold(f"r{repeat + 1}f{k + 1}", tuple(labels.index[train]), tuple(labels.index[test])))
    return folds


def require_both_classes(y, where: str) -> None:
    """Raise :class:`OneClassFoldError` naming ``where`` unless ``y`` holds both classes."""
    classes, counts = np.unique(np.asarray(y), return_counts=True)
    if len(classes) < 2:
        found = f"only class {classes[0]} ({counts[0]} patients)" if len(classes) else "no patients"
        raise OneClassFoldError(f"{where}: training data has {found}; a classifier needs both classes")
