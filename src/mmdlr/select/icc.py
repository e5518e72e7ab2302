"""Robustness filter: keep features whose ICC(3,1) under contour perturbations reaches a threshold."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

ICC_TYPE = "ICC(C,1)"  # pingouin's name for Shrout & Fleiss ICC(3,1): two-way mixed, consistency, single rater
MIN_TARGETS = 5  # pingouin's minimum number of rated patients


def feature_icc(ratings: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """ICC(3,1) with its 95% CI of every feature, by ``pingouin.intraclass_corr``.

    ``ratings``: rater (the original contour and each perturbation) -> table indexed by patient with one
    column per feature; patients missing from a rater or NaN there are left out of that feature's ICC.
    A feature with fewer than 5 complete patients, or constant over all of them, has NaN.
    """
    import pingouin  # here, not with the module: it loads matplotlib, which the analysis grid's workers never need

    raters = list(ratings)
    columns = list(next(iter(ratings.values())).columns)
    patients = next(iter(ratings.values())).index
    for table in ratings.values():
        patients = patients.intersection(table.index)
    rows = []
    for column in columns:
        values = np.column_stack([ratings[rater].loc[patients, column].to_numpy(dtype=float) for rater in raters])
        values = values[np.isfinite(values).all(axis=1)]
        icc, low, high = np.nan, np.nan, np.nan
        if len(values) >= MIN_TARGETS and np.ptp(values) > 0:
            long = pd.DataFrame({"patient": np.repeat(np.arange(len(values)), len(raters)),
                                 "rater": np.tile(np.arange(len(raters)), len(values)), "value": values.ravel()})
            with np.errstate(divide="ignore", invalid="ignore"):  # F and its CI are infinite at perfect agreement
                result = pingouin.intraclass_corr(long, "patient", "rater", "value").set_index("Type").loc[ICC_TYPE]
            icc, (low, high) = float(result["ICC"]), result["CI95"]
        rows.append({"feature": column, "icc": icc, "icc_low": low, "icc_high": high, "n_patients": len(values)})
    return pd.DataFrame(rows).set_index("feature")


class ICCThresholdSelector(SelectorMixin, BaseEstimator):
    """Drop features whose ICC(3,1) between the original contour and its perturbations, on the patients it is
    fitted on, is below ``threshold``.

    ``perturbed``: the perturbed re-extractions, shape (perturbations, patients, features), the patients
    named by ``patients`` and the features by ``features`` (as ``X``'s columns); plain arrays, so a fitted
    model saves as a skops file. ``fit`` then needs ``X`` as a DataFrame indexed by patient id: the ICC uses
    exactly the fitted rows (inside a training fold, that fold's patients). A feature without perturbed
    values, or whose ICC cannot be computed, is kept; with ``perturbed=None`` every feature is kept.
    """

    def __init__(self, perturbed: np.ndarray | None = None, patients: Sequence[str] | None = None,
                 features: Sequence[str] | None = None, threshold: float = 0.75):
        self.perturbed = perturbed
        self.patients = patients
        self.features = features
        self.threshold = threshold

    def fit(self, X, y=None):
        frame = X if isinstance(X, pd.DataFrame) else None
        X = validate_data(self, X, dtype=float, ensure_all_finite=False)
        self.icc_ = np.full(X.shape[1], np.nan)
        if self.perturbed is not None:
            if frame is None:
                raise ValueError("ICCThresholdSelector with perturbed values needs X as a DataFrame indexed by "
                                 "patient id (its rows are matched to the perturbed re-extractions by id)")
            judged = [c for c in frame.columns if c in set(self.features)]
            columns = pd.Index(self.features).get_indexer(judged)
            ratings = {"original": frame[judged]} | {
                f"perturbation {k}": pd.DataFrame(values[:, columns], index=list(self.patients), columns=judged)
                for k, values in enumerate(np.asarray(self.perturbed, dtype=float))}
            if judged:
                self.icc_[frame.columns.get_indexer(judged)] = feature_icc(ratings)["icc"].loc[judged].to_numpy()
        self.support_ = ~(self.icc_ < self.threshold)  # NaN (not judged) is kept
        return self

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.target_tags.required = False
        return tags
