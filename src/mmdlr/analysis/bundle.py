"""A fitted row model saved with everything needed to serve it (joblib file)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from mmdlr.analysis.features import Block, assemble_features
from mmdlr.atomic import atomic_path
from mmdlr.fuse import block_presence


@dataclass
class ModelBundle:
    """Fitted model + the exact feature columns (and their source tables) it expects.

    ``blocks`` maps block name (``<family>_<modality>``) to the table it is read from and the feature
    names in that table; ``feature_columns`` are the prefixed columns of the model's input frame.
    ``requires_all_blocks``: the model was trained on complete patients only (single modality, early
    fusion), so a patient lacking one of its modalities is refused rather than silently imputed.
    """

    model: object
    family: str
    method: str
    classifier: str
    threshold: float
    blocks: dict[str, Block]
    trained_on: str
    requires_all_blocks: bool = True

    @property
    def feature_columns(self) -> list[str]:
        return [column for block in self.blocks.values() for column in block.columns]

    def features_from_tables(self, tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
        """Model input from per-block feature tables (``{"radiomics_us": table, ...}``, tables as in
        docs/contracts.md); a block not given counts as a missing modality."""
        return assemble_features(tables, self.blocks)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Malignancy probability per row of ``features`` (prefixed columns; extra columns are ignored)."""
        missing = [column for column in self.feature_columns if column not in features.columns]
        if missing:
            raise ValueError(f"{self.method}: input lacks {len(missing)} feature column(s), e.g. {missing[:3]}")
        if self.requires_all_blocks:
            presence = block_presence(features, {name: block.columns for name, block in self.blocks.items()})
            incomplete = presence.index[~presence.all(axis=1)]
            if len(incomplete):
                raise ValueError(f"{self.family} / {self.method} needs every modality of {list(self.blocks)}; "
                                 f"missing for {list(incomplete[:3])}")
        return self.model.predict_proba(features[self.feature_columns])[:, 1]

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """1 (malignant) where the probability reaches the bundle's threshold."""
        return (self.predict_proba(features) >= self.threshold).astype(int)


def save_bundle(bundle: ModelBundle, path: str | Path) -> Path:
    """Write the bundle with joblib (atomically)."""
    with atomic_path(path) as temp:
        joblib.dump(bundle, temp)
    return Path(path)


def load_bundle(path: str | Path) -> ModelBundle:
    """Read a bundle written by :func:`save_bundle` (only load files you trust: joblib runs pickle)."""
    bundle = joblib.load(path)
    if not isinstance(bundle, ModelBundle):
        raise TypeError(f"{path} does not hold a ModelBundle")
    return bundle
