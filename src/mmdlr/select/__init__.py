"""Feature selection steps (fold-safe scikit-learn transformers)."""

from mmdlr.select.impute import FiniteMedianImputer
from mmdlr.select.lasso import LassoSelector
from mmdlr.select.mann_whitney import MannWhitneyFilter, mann_whitney_pvalues
from mmdlr.select.pca import ClippedPCA
from mmdlr.select.spearman import SpearmanRedundancyFilter

__all__ = [
    "ClippedPCA",
    "FiniteMedianImputer",
    "LassoSelector",
    "MannWhitneyFilter",
    "SpearmanRedundancyFilter",
    "mann_whitney_pvalues",
]
