"""Metrics, confidence intervals, DeLong tests and train/test protocols."""

from mmdlr.evaluate.bootstrap import BOOTSTRAP_STATISTICS, group_bootstrap_ci
from mmdlr.evaluate.calibration import PROBABILITY_CLIP, logistic_calibration
from mmdlr.evaluate.delong import delong_auc_variance, delong_covariance, delong_test, delong_unpaired_test
from mmdlr.evaluate.interval import Interval, auc_ci, newcombe_auc_ci, wilson_ci
from mmdlr.evaluate.metrics import binary_metrics, proportion_counts, sensitivity, specificity, youden_threshold
from mmdlr.evaluate.resampled_t import CorrectedTTest, corrected_t_ci, corrected_t_test
from mmdlr.evaluate.splits import (
    Fold,
    OneClassFoldError,
    StratifiedFoldsWithGroups,
    holdout_fold,
    leave_center_out_folds,
    patient_groups,
    repeated_folds,
    require_both_classes,
)

__all__ = [
    "BOOTSTRAP_STATISTICS",
    "CorrectedTTest",
    "Fold",
    "Interval",
    "OneClassFoldError",
    "PROBABILITY_CLIP",
    "StratifiedFoldsWithGroups",
    "auc_ci",
    "binary_metrics",
    "corrected_t_ci",
    "corrected_t_test",
    "delong_auc_variance",
    "delong_covariance",
    "delong_test",
    "delong_unpaired_test",
    "group_bootstrap_ci",
    "holdout_fold",
    "leave_center_out_folds",
    "logistic_calibration",
    "newcombe_auc_ci",
    "patient_groups",
    "proportion_counts",
    "repeated_folds",
    "require_both_classes",
    "sensitivity",
    "specificity",
    "wilson_ci",
    "youden_threshold",
]
