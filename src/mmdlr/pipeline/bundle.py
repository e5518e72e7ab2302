"""Running the MONAI bundle's configs in-process (the same JSON that `python -m monai.bundle run` reads)."""

from __future__ import annotations

from monai.bundle import ConfigWorkflow

from mmdlr.paths import BUNDLE_DIR

CONFIGS = BUNDLE_DIR / "configs"


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
