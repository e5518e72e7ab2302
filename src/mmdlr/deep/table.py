"""The deep feature table ``deep_<mod>.csv`` read by the analysis stage (see docs/contracts.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import Dataset

from mmdlr.atomic import write_csv
from mmdlr.deep.classifier import DeepClassifier
from mmdlr.deep.features import META_KEYS, extract_features, extract_features_reusing

PROB_COLUMN = "head_prob_malignant"


def feature_column(index: int) -> str:
    """Name of the ``index``-th pooled feature column (``deep_0000``, ...)."""
    return f"deep_{index:04d}"


def write_deep_table(network: DeepClassifier, dataset: Dataset, path: str | os.PathLike, batch_size: int = 8,
                     device: str | torch.device = "cpu", num_workers: int = 0, precision: str = "float32",
                     feature_cache: str | os.PathLike | None = None) -> Path:
    """Write one row per case: metadata, the pooled features and the head's malignant probability (the features
    of cases in ``feature_cache``, training's frozen-backbone features, taken from it)."""
    result = (extract_features(network, dataset, batch_size, device, num_workers, precision=precision)
              if feature_cache is None else
              extract_features_reusing(network, dataset, feature_cache, batch_size, device, num_workers, precision))
    columns = [feature_column(i) for i in range(result.features.shape[1])]
    table = pd.concat([
        pd.DataFrame({key: result.meta[key] for key in META_KEYS}),
        pd.DataFrame(result.features, columns=columns),
        pd.DataFrame({PROB_COLUMN: result.prob_malignant}),
    ], axis=1)
    table["label"] = table["label"].astype(int)
    return write_csv(table, path)
