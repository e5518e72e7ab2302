"""Deep half of the pipeline: ImageNet backbones on lesion ROIs, frozen or fine-tuned, pooled features.

The MONAI bundle under ``bundle/`` drives these pieces from JSON (``"$import mmdlr.deep as deep"``).
"""

from mmdlr.deep.backbones import BACKBONES, BackboneSpec, get_backbone
from mmdlr.deep.classifier import (MODES, SETTINGS, DeepClassifier, checkpoint_setting, checkpoint_settings,
                                   trainable_from)
from mmdlr.deep.data import PARTS, partition, select_patients
from mmdlr.deep.features import (PRECISIONS, FeatureDataset, Features, check_precision, extract_features,
                                 pooled_features, run_with_threads, save_feature_cache)
from mmdlr.deep.gradcam import roi_heatmap, save_gradcam
from mmdlr.deep.report import write_metrics
from mmdlr.deep.table import PROB_COLUMN, feature_column, write_deep_table
from mmdlr.deep.weights import imagenet_cache_path, imagenet_state_dict, load_pretrained

__all__ = [
    "BACKBONES", "BackboneSpec", "DeepClassifier", "FeatureDataset", "Features", "MODES", "PARTS", "PRECISIONS",
    "PROB_COLUMN", "SETTINGS", "check_precision", "checkpoint_setting", "checkpoint_settings", "extract_features",
    "feature_column", "get_backbone", "imagenet_cache_path", "imagenet_state_dict", "load_pretrained", "partition",
    "pooled_features", "roi_heatmap", "run_with_threads", "save_feature_cache", "save_gradcam", "select_patients",
    "trainable_from", "write_deep_table", "write_metrics",
]
