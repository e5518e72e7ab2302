"""Fit one grid row on one training fold and predict its test patients."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import cross_val_predict

from mmdlr.analysis.config import AnalysisConfig
from mmdlr.analysis.features import FeatureSet
from mmdlr.analysis.grid import GridRow, build_model, describe_classifier, row_patients
from mmdlr.evaluate import Fold, StratifiedFoldsWithGroups, patient_groups, require_both_classes, youden_threshold
from mmdlr.fuse import block_presence

PREDICTION_COLUMNS = ["patient_id", "fold", "family", "method", "classifier", "probability", "label",
                      "threshold", "modalities_used"]


@dataclass
class FoldOutcome:
    """Test predictions of one row on one fold (none for a final fit) and, if kept, the fitted model."""

    row: GridRow
    fold: str
    predictions: pd.DataFrame
    classifier: str
    threshold: float
    n_train: int
    model: object | None = None


def fit_row(row: GridRow, fold: Fold | None, features: FeatureSet, config: AnalysisConfig,
            keep_model: bool = False) -> FoldOutcome:
    """Fit ``row``'s model on the fold's training patients and predict its test patients.

    ``fold=None`` fits the final model on all of the row's patients (no predictions). The decision
    threshold is 0.5, a fixed value, or Youden's J on out-of-fold training predictions; never the test set.
    """
    patients = row_patients(row, features, config.fusion.missing)
    train = patients if fold is None else patients[patients.isin(fold.train)]
    fold_name = "all" if fold is None else fold.name
    y_train = features.labels.loc[train].to_numpy()
    require_both_classes(y_train, f"{row.family} / {row.method}, fold {fold_name}")
    X_train = features.frame.loc[train]
    fit_params = {"groups": patient_groups(features.groups).loc[train].to_numpy()} if features.has_groups else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = build_model(row, features, config).fit(X_train, y_train, **fit_params)
        threshold = _threshold(row, features, config, X_train, y_train, fit_params)
        test = pd.Index([]) if fold is None else patients[patients.isin(fold.test)]
        probability = model.predict_proba(features.frame.loc[test])[:, 1] if len(test) else []
    classifier = describe_classifier(model)
    used = block_presence(features.frame.loc[test], features.block_columns(row.blocks))
    predictions = pd.DataFrame({
        "patient_id": test, "fold": fold_name, "family": row.family, "method": row.method,
        "classifier": classifier, "probability": probability, "label": features.labels.loc[test].to_numpy(),
        "threshold": threshold, "modalities_used": ["+".join(used.columns[mask]) for mask in used.to_numpy()],
    }, columns=PREDICTION_COLUMNS)
    return FoldOutcome(row, fold_name, predictions, classifier, threshold, len(train), model if keep_model else None)


def _threshold(row, features, config, X_train, y_train, fit_params) -> float:
    if config.threshold != "youden":
        return float(config.threshold)
    out_of_fold = cross_val_predict(
        build_model(row, features, config), X_train, y_train, groups=fit_params.get("groups"),
        cv=StratifiedFoldsWithGroups(config.inner_folds, config.seed), method="predict_proba", params=fit_params,
    )[:, 1]
    return youden_threshold(y_train, out_of_fold)
