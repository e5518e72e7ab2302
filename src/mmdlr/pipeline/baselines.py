"""CNN baselines of the paper's Table 4: each backbone's own softmax head, per modality, on the same split.

Each (backbone, modality) is trained by the bundle's ``train.json`` (frozen backbone, new head), scored
by ``evaluate.json`` on the test split, and its per-patient probabilities (``inference.json``) give the
confidence intervals. Each case passes through the frozen backbone once: training's features and those
``evaluate.json`` computes for the test split go to a feature cache that the next config reads (deleted after
inference). The paper's four CNNs (VGG-19, GoogLeNet, ResNet-101, Inception-v3) and any other registered
backbone run at their own input size (Inception-v3 299x299, the others 224x224) unless ``deep.spatial_size``
sets one for all. With ``deep.baseline_weights: none`` the frozen backbone is random:
such rows are named "untrained backbone (lower bound)", not results.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mmdlr.analysis.grid import SINGLE, GridRow
from mmdlr.analysis.summary import holdout_row, markdown_table, result_table
from mmdlr.atomic import write_csv, write_text
from mmdlr.deep.backbones import get_backbone
from mmdlr.evaluate import patient_groups
from mmdlr.io.manifest import Manifest
from mmdlr.pipeline.bundle import bundle_overrides, run_bundle_config
from mmdlr.pipeline.config import RunConfig

FAMILY = "cnn"
EXTRA_COLUMNS = ("bundle_evaluate_auc", "weights", "input_size")
UNTRAINED = "untrained backbone (lower bound)"
UNTRAINED_NOTE = (f"Rows marked '{UNTRAINED}': the backbone has random weights (deep.baseline_weights none), only "
                  "the head is trained; they bound what the head alone learns and are not results.")


def untrained(weights: str | None) -> bool:
    """Whether baseline ``weights`` leave the (frozen) backbone random."""
    return weights is None or str(weights).lower() == "none"


def input_size(config: RunConfig, backbone: str) -> str:
    """The side lengths ``backbone`` is trained and tested at, as ``HxW``."""
    return "x".join(map(str, get_backbone(backbone).spatial_size(config.deep.spatial_size)))


def _baseline(manifest: Manifest, config: RunConfig, backbone: str, modality: str, folder: Path) -> tuple[str, dict]:
    def run(name: str, workflow_type: str | None = None, **values):
        run_bundle_config(name, workflow_type, **bundle_overrides(config, folder, modality, backbone,
                                                                  manifest=str(manifest.path), **values))

    feature_cache = str(folder / "models" / modality / "frozen_features.npz")
    run("train", "train", weights=config.deep.baseline_weights, mode="frozen", max_epochs=config.deep.max_epochs,
        batch_size=config.deep.batch_size, learning_rate=config.deep.learning_rate, seed=config.deep.seed,
        feature_cache=feature_cache)
    run("evaluate", split="test", feature_cache=feature_cache)
    evaluated = json.loads((folder / f"metrics_{modality}_test.json").read_text())
    run("inference", feature_cache=feature_cache)
    Path(feature_cache).unlink()
    table = pd.read_csv(folder / f"deep_{modality}.csv", keep_default_na=False,
                        usecols=["patient_id", "label", "split", "group", "head_prob_malignant"])
    test = table[table["split"] == "test"]
    predictions = pd.DataFrame({"patient_id": test["patient_id"], "label": test["label"],
                                "probability": test["head_prob_malignant"],
                                "threshold": 0.5, "classifier": "Softmax"})
    method = f"{get_backbone(backbone).display_name} ({modality.upper()})"
    if untrained(config.deep.baseline_weights):
        method += f", {UNTRAINED}"
    row = holdout_row(predictions, config.analysis.bootstrap.n, config.analysis.bootstrap.seed,
                      patient_groups(test.set_index("patient_id")["group"]))
    return method, row | {"bundle_evaluate_auc": evaluated["auc"], "weights": config.deep.baseline_weights,
                          "input_size": input_size(config, backbone)}


def baselines_stage(manifest: Manifest, config: RunConfig, out: Path) -> list[Path]:
    """Write ``results/table_cnn_baselines.csv`` and ``.md`` (hold-out protocol only)."""
    rows, summaries = [], {}
    for backbone in config.deep.baselines:
        for modality in manifest.modalities:
            method, summary = _baseline(manifest, config, backbone, modality, out / "baselines" / backbone)
            rows.append(GridRow(FAMILY, method, SINGLE, ()))
            summaries[(FAMILY, method)] = summary
    table = result_table(rows, summaries) if rows else pd.DataFrame(columns=["method"])
    if rows:
        extra = pd.DataFrame([summaries[(FAMILY, row.method)] for row in rows])
        table[list(EXTRA_COLUMNS)] = extra[list(EXTRA_COLUMNS)].to_numpy()
    results = out / "results"
    csv = write_csv(table, results / "table_cnn_baselines.csv")
    sizes = ", ".join(f"{get_backbone(name).display_name} {input_size(config, name)}" for name in config.deep.baselines)
    note = (f"\nEach network's frozen backbone (weights: {config.deep.baseline_weights}) with a new softmax head; "
            f"input size {sizes}." if rows else "\nNo CNN baselines configured (deep.baselines).")
    if rows and untrained(config.deep.baseline_weights):
        note += " " + UNTRAINED_NOTE
    note += "\n"
    markdown = markdown_table(table, "CNN baselines (paper Table 4, lower part)") if rows else ""
    write_text(markdown + note, results / "table_cnn_baselines.md")
    return [csv, results / "table_cnn_baselines.md"]
