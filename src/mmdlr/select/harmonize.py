"""ComBat harmonisation: remove each centre's (site's, scanner's) shift and scale from every feature."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from neuroCombat import neuroCombat
from neuroCombat.neuroCombat import adjust_data_final, fit_LS_model_and_find_priors
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

NEW_CENTERS = ("estimate", "refuse")
MIN_CENTER_ROWS = 2  # a centre's scale is a variance over its rows
ONE_CENTER = "all"  # the centre of every row when the harmonizer is told of none


class ComBatHarmonizer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """ComBat (Johnson et al. 2007, as neuroCombat implements it for imaging features, Fortin et al. 2018)
    with the centre as batch: each feature's per-centre location (gamma*) and scale (delta*), shrunk by
    parametric empirical Bayes across features, are estimated on the fitted rows only and removed, leaving
    the pooled mean and variance of the training rows.

    The centre of each row comes from ``center_column`` (a column of ``X``, by name for a DataFrame or by
    position; it is not passed on) or from side data like :class:`~mmdlr.select.icc.ICCThresholdSelector`'s:
    ``centers[i]`` is the centre of patient ``patients[i]`` and ``X`` is a DataFrame indexed by patient id,
    at fit and at transform. With neither, every row is one centre. No covariates are kept: the label
    would be one, and test patients have none.

    A centre not seen in ``fit`` (leave-centre-out's test centre, an external cohort): with
    ``new_centers="estimate"`` its gamma and delta are estimated at transform time from its own rows in
    that call (at least 2, unlabelled), standardised by the training fit's pooled mean and variance, as
    neuroHarmonize's ``harmonizationLearn(orig_model=..., eb=False)`` does for a new site: by least squares,
    without empirical Bayes, whose prior pools the new centre's scale ratios over features and, when a few
    are extreme (intensity features of a rescaling scanner: ratios of 1e10), inflates every feature's delta
    and flattens the centre's features (measured: docs/benchmarks.md section 5). The training fit is
    unchanged, but such a row's output depends on the other rows of its centre in the call.
    ``new_centers="refuse"`` raises instead. Features constant over the training rows pass unchanged; with
    one feature the empirical Bayes step of the fit is skipped (it pools over features).
    """

    def __init__(self, centers: Sequence[str] | None = None, patients: Sequence[str] | None = None,
                 center_column: str | int | None = None, empirical_bayes: bool = True,
                 new_centers: str = "estimate"):
        self.centers = centers
        self.patients = patients
        self.center_column = center_column
        self.empirical_bayes = empirical_bayes
        self.new_centers = new_centers

    def fit(self, X, y=None):
        if self.new_centers not in NEW_CENTERS:
            raise ValueError(f"ComBatHarmonizer: new_centers must be one of {NEW_CENTERS}, got {self.new_centers!r}")
        values, centers = self._values_and_centers(X, reset=True)
        self.centers_, counts = np.unique(centers, return_counts=True)
        _require_rows(self.centers_, counts, "in the training rows")
        self.harmonized_ = np.ptp(values, axis=0) > 0
        if not self.harmonized_.any():
            return self
        # neuroCombat prints each step; its convergence test divides by gamma, which is 0 for one centre
        with contextlib.redirect_stdout(io.StringIO()), np.errstate(divide="ignore", invalid="ignore"):
            estimates = neuroCombat(values[:, self.harmonized_].T, pd.DataFrame({"center": centers}), "center",
                                    eb=self._use_empirical_bayes())["estimates"]
        self.stand_mean_ = estimates["stand.mean"][:, 0]
        self.var_pooled_ = estimates["var.pooled"][:, 0]
        self.gamma_star_ = np.asarray(estimates["gamma.star"], dtype=float)
        self.delta_star_ = np.asarray(estimates["delta.star"], dtype=float)
        return self

    def transform(self, X):
        check_is_fitted(self, "harmonized_")
        values, centers = self._values_and_centers(X, reset=False)
        if not self.harmonized_.any():
            return values
        known = np.isin(centers, self.centers_)
        new = np.unique(centers[~known])
        if len(new) and self.new_centers == "refuse":
            raise ValueError(f"ComBat: centre {str(new[0])!r} was not among the training centres "
                             f"({', '.join(map(str, self.centers_))}); harmonise it with new_centers='estimate' "
                             "or train on it")
        present, inverse = np.unique(centers, return_inverse=True)
        standardised = ((values[:, self.harmonized_] - self.stand_mean_) / np.sqrt(self.var_pooled_)).T
        gamma, delta = self._new_center_effects(standardised[:, ~known], centers[~known])
        for center in present[np.isin(present, self.centers_)]:
            index = np.searchsorted(self.centers_, center)
            gamma[center], delta[center] = self.gamma_star_[index], self.delta_star_[index]
        design = np.eye(len(present))[inverse]
        info = {"n_batch": len(present), "n_sample": len(values), "ref_level": None,
                "sample_per_batch": np.bincount(inverse), "batch_info": [np.flatnonzero(inverse == k)
                                                                         for k in range(len(present))]}
        harmonized = adjust_data_final(standardised, design, np.array([gamma[c] for c in present]),
                                       np.array([delta[c] for c in present]), self.stand_mean_[:, None], 0,
                                       self.var_pooled_, info, None)
        values[:, self.harmonized_] = harmonized.T
        return values

    def _new_center_effects(self, standardised: np.ndarray, centers: np.ndarray) -> tuple[dict, dict]:
        """Least-squares gamma and delta of each centre not seen in fit, from its own standardised rows
        (features x rows)."""
        if not len(centers):
            return {}, {}
        new, inverse, counts = np.unique(centers, return_inverse=True, return_counts=True)
        _require_rows(new, counts, "to estimate a centre not seen in training")
        info = {"n_batch": len(new), "ref_level": None,
                "batch_info": [np.flatnonzero(inverse == k) for k in range(len(new))]}
        with np.errstate(divide="ignore", invalid="ignore"):  # the priors, unused here, divide by 0 for 2 rows
            effects = fit_LS_model_and_find_priors(standardised, np.eye(len(new))[inverse], info, False)
        return dict(zip(new, np.asarray(effects["gamma_hat"]))), dict(zip(new, np.asarray(effects["delta_hat"])))

    def _use_empirical_bayes(self) -> bool:
        return bool(self.empirical_bayes) and self.harmonized_.sum() > 1

    def _values_and_centers(self, X, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        """``X``'s feature values (a float copy, the centre column left out) and each row's centre."""
        if self.center_column is not None:
            if isinstance(X, pd.DataFrame):
                if self.center_column not in X.columns:
                    raise ValueError(f"ComBat: X has no centre column {self.center_column!r}")
                centers, X = X[self.center_column].to_numpy(), X.drop(columns=self.center_column)
            else:
                X = np.asarray(X, dtype=object)
                centers, X = X[:, self.center_column], np.delete(X, self.center_column, axis=1)
        else:
            centers = None if self.centers is None else self._centers_of(X)
        values = validate_data(self, X, dtype=float, reset=reset, copy=True)
        centers = np.full(len(values), ONE_CENTER) if centers is None else np.asarray(centers).astype(str)
        missing = np.flatnonzero(centers == "")
        if len(missing):
            raise ValueError(f"ComBat: row {missing[0]} has no centre; give every patient a centre")
        return values, centers

    def _centers_of(self, X) -> np.ndarray:
        """The centre of each row of ``X`` (a DataFrame indexed by patient id) from the side data."""
        if not isinstance(X, pd.DataFrame):
            raise ValueError("ComBatHarmonizer with centers needs X as a DataFrame indexed by patient id (its "
                             "rows are matched to their centres by id)")
        by_patient = pd.Series(np.asarray(self.centers, dtype=str), index=np.asarray(self.patients, dtype=str))
        ids = X.index.astype(str)
        unknown = ids[~ids.isin(by_patient.index)]
        if len(unknown):
            raise ValueError(f"ComBat: patient {unknown[0]} has no centre in the harmonizer's side data")
        return by_patient.loc[ids].to_numpy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        return tags


def _require_rows(centers: np.ndarray, counts: np.ndarray, purpose: str) -> None:
    """Raise naming the first centre with fewer than :data:`MIN_CENTER_ROWS` rows."""
    few = np.flatnonzero(counts < MIN_CENTER_ROWS)
    if len(few):
        raise ValueError(f"ComBat needs at least {MIN_CENTER_ROWS} patients of each centre {purpose}; centre "
                         f"{str(centers[few[0]])!r} has {int(counts[few[0]])} sample")


def harmonizers(model) -> list[ComBatHarmonizer]:
    """Every :class:`ComBatHarmonizer` inside ``model`` (a search, pipeline or fusion model, at any depth), each
    once, the unfitted templates of searches and stacks included."""
    found, visited = [], set()

    def visit(item):
        if id(item) in visited:
            return
        visited.add(id(item))
        if isinstance(item, ComBatHarmonizer):
            found.append(item)
        elif isinstance(item, BaseEstimator):
            for value in vars(item).values():
                visit(value)
        elif isinstance(item, (list, tuple, dict)):
            for value in item.values() if isinstance(item, dict) else item:
                visit(value)

    visit(model)
    return found


def assign_centers(model, centers: pd.Series) -> int:
    """Give every :class:`ComBatHarmonizer` inside ``model`` ``centers`` (patient id -> centre) as its side data,
    e.g. an external cohort's before predicting it; the fitted centre effects stay as they are. Returns how many
    harmonizers it found."""
    found = harmonizers(model)
    for harmonizer in found:
        harmonizer.set_params(centers=centers.to_numpy(dtype=str), patients=centers.index.to_numpy(dtype=str))
    return len(found)
