"""Metrics, confidence intervals, DeLong tests and train/test protocols."""

from mmdlr.evaluate.bootstrap import BOOTSTRAP_METRICS, bootstrap_ci, bootstrap_metrics, percentile_ci
from mmdlr.evaluate.delong import delong_auc_variance, delong_ci, delong_covariance, delong_test
from mmdlr.evaluate.metrics import binary_metrics, sensitivity, specificity, youden_threshold
from mmdlr.evaluate.resampled_t import corrected_t_ci
from mmdlr.evaluate.splits import (
    Fold,
    OneClassFoldError,
    StratifiedFoldsWithGroups,
    holdout_fold,
    patient_groups,
    repeated_folds,
    require_both_classes,
)

__all__ = [
    "BOOTSTRAP_METRICS",
    "Fold",
    "OneClassFoldError",
    "StratifiedFoldsWithGroups",
    "binary_metrics",
    "bootstrap_ci",
    "bootstrap_metrics",
    "corrected_t_ci",
    "delong_auc_variance",
    "delong_ci",
    "delong_covariance",
    "delong_test",
    "holdout_fold",
    "patient_groups",
    "percentile_ci",
    "repeated_folds",
    "require_both_classes",
    "sensitivity",
    "specificity",
    "youden_threshold",
]
