"""Train/test protocols: stratified (and grouped) hold-out split, repeated outer folds, leave-centre-out."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold, StratifiedKFold
from sklearn.utils.metadata_routing import MetadataRequest

from mmdlr.digest import content_digest


class OneClassFoldError(ValueError):
    """A training fold holds only one class, so no classifier can be fitted on it."""


CACHED_SPLITS = 64
_SPLITS: OrderedDict[bytes, list[tuple[np.ndarray, np.ndarray]]] = OrderedDict()
_SPLITS_LOCK = threading.Lock()


def _read_only(indices: np.ndarray) -> np.ndarray:
    indices.flags.writeable = False
    return indices


@dataclass(frozen=True)
class StratifiedFoldsWithGroups:
    """Stratified K-fold that becomes stratified *grouped* K-fold when ``groups`` is passed to ``split``.

    The splits depend only on the classes of ``y``, ``groups`` and the settings, and one fold's analysis asks for
    the same ones many times (every search, its out-of-fold probabilities, LASSO's penalty on the same patients,
    every row on the same patients): the last ``CACHED_SPLITS`` results are kept in the process, as read-only
    index arrays. ``StratifiedGroupKFold`` walks its groups in Python, 0.4 s for 2,160 patients: 31 % of a
    3,000-patient outer fold before (66 splits asked for, 30 different).
    """

    n_splits: int = 3
    random_state: int = 0

    def split(self, X, y, groups=None):
        classes = np.unique(np.asarray(y), return_inverse=True)[1]  # the splits see only these: 0/1 as int or float
        key = content_digest((self.n_splits, self.random_state, classes.astype(np.int64),
                              None if groups is None else np.asarray(groups)))
        with _SPLITS_LOCK:  # the threading backend's tasks share it
            splits = _SPLITS.get(key)
            if splits is not None:
                _SPLITS.move_to_end(key)
        if splits is None:
            splits = [tuple(_read_only(indices) for indices in split) for split in self._split(X, y, groups)]
            with _SPLITS_LOCK:
                _SPLITS[key] = splits
                while len(_SPLITS) > CACHED_SPLITS:
                    _SPLITS.popitem(last=False)
        return iter(splits)

    def _split(self, X, y, groups):
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


def leave_center_out_folds(labels: pd.Series, centers: pd.Series | None) -> list[Fold]:
    """One fold per centre: its patients the test set, every other centre's the training set (sklearn's
    ``LeaveOneGroupOut`` with the centre as group; folds named ``center_<name>`` in sorted order).

    Raises ``ValueError`` naming the problem when there are no centres, a patient has none, there are fewer
    than two, or a fold's training side lacks a class.
    """
    if centers is None or (centers.fillna("").astype(str) == "").all():
        raise ValueError("protocol leave_center_out needs a center column (site or scanner) in the manifest and "
                         "the feature tables; add one or choose protocol holdout or nested_cv")
    centers = centers.reindex(labels.index).fillna("").astype(str)
    if (centers == "").any():
        raise ValueError(f"protocol leave_center_out: patient {centers.index[centers == ''][0]} has no center; "
                         "give every patient one")
    if centers.nunique() < 2:
        raise ValueError(f"protocol leave_center_out needs at least 2 centers, found only {centers.iloc[0]!r}; "
                         "choose protocol holdout or nested_cv")
    folds = []
    for train, test in LeaveOneGroupOut().split(labels.index, labels.to_numpy(), centers.to_numpy()):
        center = centers.iloc[test[0]]
        trained = labels.iloc[train]
        if trained.nunique() < 2:
            raise ValueError(f"protocol leave_center_out: with center {center} as test set the other centers hold "
                             f"only {'malignant' if trained.iloc[0] else 'benign'} patients; a classifier needs both "
                             "classes in training")
        folds.append(Fold(f"center_{center}", tuple(labels.index[train]), tuple(labels.index[test])))
    return folds


def require_both_classes(y, where: str) -> None:
    """Raise :class:`OneClassFoldError` naming ``where`` unless ``y`` holds both classes."""
    classes, counts = np.unique(np.asarray(y), return_counts=True)
    if len(classes) < 2:
        found = f"only class {classes[0]} ({counts[0]} patients)" if len(classes) else "no patients"
        raise OneClassFoldError(f"{where}: training data has {found}; a classifier needs both classes")
