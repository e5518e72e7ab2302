"""Running the MONAI bundle's configs in-process (the same JSON that `python -m monai.bundle run` reads)."""

from __future__ import annotations

from pathlib import Path

from monai.bundle import ConfigWorkflow

from mmdlr.paths import BUNDLE_DIR
from mmdlr.pipeline.config import RunConfig

CONFIGS = BUNDLE_DIR / "configs"


def bundle_overrides(config: RunConfig, output_dir: str | Path, modality: str, backbone: str | None = None) -> dict:
    """The bundle values a run config fixes for one modality (shared by training, inference, Grad-CAM,
    the baselines and serving, so they never diverge)."""
    return {"output_dir": str(output_dir), "modality": modality, "backbone": backbone or config.deep.backbone,
            "spatial_size": list(config.deep.spatial_size), "roi_margin": config.roi.margin,
            "roi_margin_unit": config.roi.margin_unit, "mask_label": config.roi.label_value,
            "precision": config.deep.precision}


def run_bundle_config(name: str, workflow_type: str | None = None, **overrides) -> ConfigWorkflow:
    """initialize -> run -> finalize one bundle config with command-line-style overrides."""
    workflow = ConfigWorkflow(config_file=str(CONFIGS / f"{name}.json"), meta_file=str(CONFIGS / "metadata.json"),
                              logging_file=False, workflow_type=workflow_type, **overrides)
    workflow.initialize()
    missing = workflow.check_properties() if workflow_type else None
    if missing:
        raise RuntimeError(f"bundle config {name}.json lacks required properties: {missing}")
    workflow.run()
    workflow.finalize()
    return workflow
