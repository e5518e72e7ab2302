"""What a finished `mmdlr run` folder offers for serving: its config, modalities, CNNs and saved models.

A served model is one saved :class:`~mmdlr.analysis.bundle.ModelBundle` (``results/models/index.csv``),
named after its file: ``radiomics_us``, ``deep_mg_mr``, ``fusion_stacking``, ...; its test metrics come
from the run's result table of its family (``results/table_<family>.csv``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mmdlr.analysis.bundle import ModelBundle, load_bundle
from mmdlr.analysis.grid import TABLE_NAMES
from mmdlr.io.manifest import Manifest
from mmdlr.pipeline.config import RunConfig, run_config_from_dict

MODELS_INDEX = Path("results") / "models" / "index.csv"


class UnknownModelError(LookupError):
    """A model name the run folder does not hold."""


@dataclass(frozen=True)
class ServedModel:
    """A saved model with its name, the modalities it reads and its test metrics from the run."""

    name: str
    bundle: ModelBundle
    metrics: dict

    @property
    def modalities(self) -> list[str]:
        return list(dict.fromkeys(block.modality for block in self.bundle.blocks.values()))

    @property
    def needs_every_modality(self) -> bool:
        """Single-modality and early-fusion models need all their modalities; late fusion uses what exists."""
        return self.bundle.requires_all_blocks

    def families(self, modality: str) -> set[str]:
        """Feature families (``radiomics``, ``deep``) this model reads for ``modality``."""
        return {block.family for block in self.bundle.blocks.values() if block.modality == modality}

    @property
    def cnn_modalities(self) -> list[str]:
        """The modalities whose CNN (deep) features the model reads: those Grad-CAM can explain."""
        return [modality for modality in self.modalities if "deep" in self.families(modality)]

    @property
    def description(self) -> str:
        bundle = self.bundle
        fusion = "uses the modalities present" if not self.needs_every_modality else "needs every modality"
        return (f"{bundle.family} features, {bundle.method} ({bundle.classifier}); {fusion}; "
                f"trained on the {bundle.trained_on}")


def run_config(run_dir: Path) -> RunConfig:
    """The resolved config recorded in ``provenance.json``, validated by the pipeline's own loader."""
    path = run_dir / "provenance.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --model-dir must be a finished `mmdlr run` folder")
    return run_config_from_dict(json.loads(path.read_text())["config"])


def _metrics(run_dir: Path, family: str, method: str) -> dict:
    table_path = run_dir / "results" / f"table_{TABLE_NAMES[family]}.csv"
    table = pd.read_csv(table_path) if table_path.is_file() else pd.DataFrame(columns=["method"])
    rows = table[table["method"] == method].drop(columns="method").to_dict("records")
    return {key: None if isinstance(value, float) and math.isnan(value) else value
            for key, value in (rows[0] if rows else {}).items()}


def load_models(run_dir: Path) -> dict[str, ServedModel]:
    """Every saved model of the run, by name."""
    index_path = run_dir / MODELS_INDEX
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path} not found: the run saved no models (analysis save_models: false?)")
    models = {}
    for row in pd.read_csv(index_path).to_dict("records"):
        relative = Path(row["path"])
        name = "_".join(relative.with_suffix("").parts)
        bundle = load_bundle(index_path.parent / relative)
        models[name] = ServedModel(name, bundle, _metrics(run_dir, bundle.family, bundle.method))
    return models


@dataclass
class RunFolder:
    """A finished run: its folder, resolved config, modalities and saved models."""

    path: Path
    config: RunConfig
    modalities: list[str]
    models: dict[str, ServedModel]

    @classmethod
    def open(cls, run_dir: str | Path) -> "RunFolder":
        path = Path(run_dir).resolve()
        return cls(path, run_config(path), Manifest.from_csv(path / "manifest.csv").modalities, load_models(path))

    def model(self, name: str) -> ServedModel:
        if name not in self.models:
            raise UnknownModelError(f"unknown model {name!r}; this run serves: {', '.join(self.models)}")
        return self.models[name]

    @property
    def deep_dir(self) -> Path:
        """The bundle's output folder (``models/<modality>/model.pt`` are the trained CNNs)."""
        return self.path / "deep"
