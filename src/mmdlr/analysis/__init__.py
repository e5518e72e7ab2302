"""Analysis stage: the paper's result grid (single modality, early/late fusion) under hold-out or nested CV."""

from mmdlr.analysis.bundle import ModelBundle, load_bundle, save_bundle
from mmdlr.analysis.config import AnalysisConfig, ConfigError, config_from_dict, load_config
from mmdlr.analysis.features import Block, FeatureSet, FeatureTableError, assemble_features, load_feature_set
from mmdlr.analysis.grid import GridRow, build_model, plan_rows
from mmdlr.analysis.runner import AnalysisResult, run_analysis

__all__ = [
    "AnalysisConfig",
    "AnalysisResult",
    "Block",
    "ConfigError",
    "FeatureSet",
    "FeatureTableError",
    "GridRow",
    "ModelBundle",
    "assemble_features",
    "build_model",
    "config_from_dict",
    "load_bundle",
    "load_config",
    "load_feature_set",
    "plan_rows",
    "run_analysis",
    "save_bundle",
]
