"""Fit one grid row on one training fold and predict its test patients."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from mmdlr.analysis.config import AnalysisConfig
from mmdlr.analysis.features import FeatureSet
from mmdlr.analysis.grid import (ENSEMBLE, SINGLE, STACKING, GridRow, block_model, build_model, describe_classifier,
                                 row_patients)
from mmdlr.evaluate import Fold, StratifiedFoldsWithGroups, patient_groups, require_both_classes, youden_threshold
from mmdlr.fuse import BaseFit, block_presence, fit_base, out_of_fold_probabilities

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


def _training_data(row: GridRow, fold: Fold | None, features: FeatureSet, config: AnalysisConfig):
    """Row patients, training patients, fold name, X_train (the row's columns), y_train and fit params."""
    patients = row_patients(row, features, config.fusion.missing)
    train = patients if fold is None else patients[patients.isin(fold.train)]
    fold_name = "all" if fold is None else fold.name
    y_train = features.labels.loc[train].to_numpy()
    require_both_classes(y_train, f"{row.family} / {row.method}, fold {fold_name}")
    columns = [column for block in features.block_columns(row.blocks).values() for column in block]
    fit_params = {"groups": patient_groups(features.groups).loc[train].to_numpy()} if features.has_groups else {}
    return patients, train, fold_name, features.frame.loc[train, columns], y_train, fit_params


def fit_block(name: str, fold: Fold | None, features: FeatureSet, config: AnalysisConfig,
              out_of_fold: bool = False) -> BaseFit:
    """Block ``name``'s model search fitted on the fold's training patients that have the block (``fold=None``:
    all of them) and, with ``out_of_fold``, its inner-CV out-of-fold probabilities.

    It is the model of the block's single-modality row and the block's base model in the ensemble and
    stacking rows: :func:`fit_row` takes it as ``bases`` instead of fitting it again.
    """
    row = GridRow(features.blocks[name].family, name, SINGLE, (name,))
    _, _, _, X_train, y_train, fit_params = _training_data(row, fold, features, config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit_base(block_model(name, features, config), X_train, y_train, fit_params.get("groups"),
                        StratifiedFoldsWithGroups(config.inner_folds, config.seed), out_of_fold)


def fit_row(row: GridRow, fold: Fold | None, features: FeatureSet, config: AnalysisConfig,
            keep_model: bool = False, bases: Mapping[str, BaseFit] | None = None) -> FoldOutcome:
    """Fit ``row``'s model on the fold's training patients and predict its test patients.

    ``fold=None`` fits the final model on all of the row's patients (no predictions). The decision
    threshold is 0.5, a fixed value, or Youden's J on out-of-fold training predictions; never the test set.
    ``bases`` (block name -> :func:`fit_block` on the same fold) supplies the already fitted block models
    of a single-modality, ensemble or stacking row.
    """
    patients, train, fold_name, X_train, y_train, fit_params = _training_data(row, fold, features, config)
    base = bases[row.blocks[0]] if bases and row.kind == SINGLE else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if base is not None:
            if base.patients != tuple(train):
                raise ValueError(f"{row.family} / {row.method}: block model was fitted on other patients")
            model = base.estimator
        else:
            late = {"bases": bases} if bases and row.kind in (ENSEMBLE, STACKING) else {}
            model = build_model(row, features, config).fit(X_train, y_train, **fit_params, **late)
        out_of_fold = None if base is None else base.out_of_fold
        threshold = _threshold(row, features, config, model, X_train, y_train, fit_params, out_of_fold)
        test = pd.Index([]) if fold is None else patients[patients.isin(fold.test)]
        probability = model.predict_proba(features.frame.loc[test, X_train.columns])[:, 1] if len(test) else []
    classifier = describe_classifier(model)
    used = block_presence(features.frame.loc[test], features.block_columns(row.blocks))
    predictions = pd.DataFrame({
        "patient_id": test, "fold": fold_name, "family": row.family, "method": row.method,
        "classifier": classifier, "probability": probability, "label": features.labels.loc[test].to_numpy(),
        "threshold": threshold, "modalities_used": ["+".join(used.columns[mask]) for mask in used.to_numpy()],
    }, columns=PREDICTION_COLUMNS)
    return FoldOutcome(row, fold_name, predictions, classifier, threshold, len(train), model if keep_model else None)


def _threshold(row, features, config, model, X_train, y_train, fit_params, out_of_fold=None) -> float:
    """Youden's J on ``model``'s (fitted on X_train) out-of-fold probabilities on X_train (``out_of_fold`` if
    already computed, by a block fit), or the fixed threshold."""
    if config.threshold != "youden":
        return float(config.threshold)
    if out_of_fold is None:
        out_of_fold = out_of_fold_probabilities(build_model(row, features, config), model, X_train, y_train,
                                                fit_params.get("groups"),
                                                StratifiedFoldsWithGroups(config.inner_folds, config.seed))
    return youden_threshold(y_train, out_of_fold)
