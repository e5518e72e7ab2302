"""Running the MONAI bundle's configs in-process (the same JSON that `python -m monai.bundle run` reads).

MONAI's ConfigParser evaluates a string that starts with ``$`` as Python, follows ``@`` references and
``%`` macros, and calls the ``_target_`` of any mapping. Values that reach the bundle from data (manifest
paths and modality names, config files, ``--set``, a run folder's provenance) therefore pass through
:func:`bundle_overrides`, which refuses any such string or mapping; lists of patients travel as files
(:func:`write_patient_list`), never as override strings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mmdlr.analysis.config import ConfigError
from mmdlr.atomic import write_text
from mmdlr.deep.backbones import get_backbone
from mmdlr.paths import BUNDLE_DIR

if TYPE_CHECKING:
    from mmdlr.pipeline.config import RunConfig

CONFIGS = BUNDLE_DIR / "configs"
PARSED_PREFIXES = ("$", "@", "%")  # MONAI: expression, reference, macro


def refuse_parsed_strings(value, name: str = "") -> None:
    """Raise ConfigError if ``value`` holds (at any depth) a string or a mapping key MONAI's ConfigParser
    would not take literally (a mapping with ``_target_`` is instantiated: any importable callable)."""
    from monai.bundle.config_item import ConfigComponent

    if isinstance(value, str):
        if value.startswith(PARSED_PREFIXES):
            raise ConfigError(f"value {name} = {value!r} starts with {value[0]!r}, which MONAI's config parser "
                              "would evaluate as code, a reference or a macro; mmdlr passes only literal values to "
                              "the bundle: change the value")
    elif isinstance(value, Mapping):
        reserved = sorted(ConfigComponent.non_arg_keys.intersection(value))
        if reserved:
            raise ConfigError(f"value {name or 'config'} has the key(s) {', '.join(reserved)}, which MONAI's config "
                              "parser would use to call code; mmdlr passes only literal values to the bundle: "
                              "remove them")
        for key, item in value.items():
            refuse_parsed_strings(key, f"{name} (key)")
            refuse_parsed_strings(item, f"{name}.{key}" if name else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            refuse_parsed_strings(item, f"{name}[{index}]")


def bundle_overrides(config: "RunConfig", output_dir: str | Path, modality: str, backbone: str | None = None,
                     **values) -> dict:
    """The bundle values a run config fixes for one modality, plus ``values`` (shared by training,
    inference, Grad-CAM, the baselines and serving, so they never diverge); every one checked literal."""
    overrides = {"output_dir": str(output_dir), "modality": modality, "backbone": backbone or config.deep.backbone,
                 "spatial_size": get_backbone(backbone or config.deep.backbone).spatial_size(config.deep.spatial_size),
                 "roi_margin": config.roi.margin,
                 "roi_margin_unit": config.roi.margin_unit, "mask_label": config.roi.label_value,
                 "mask_threshold": config.roi.mask_threshold,
                 "precision": config.deep.precision} | values
    refuse_parsed_strings(overrides)
    return overrides


def write_patient_list(patient_ids, path: str | Path) -> Path:
    """A JSON list of patient ids for the bundle's ``patients_file`` (ids are data, never config text)."""
    return write_text(json.dumps([str(pid) for pid in patient_ids]), path)


def run_bundle_config(name: str, workflow_type: str | None = None, **overrides):
    """initialize -> run -> finalize one bundle config with command-line-style overrides (checked literal)."""
    from monai.bundle import ConfigWorkflow

    refuse_parsed_strings(overrides)
    workflow = ConfigWorkflow(config_file=str(CONFIGS / f"{name}.json"), meta_file=str(CONFIGS / "metadata.json"),
                              logging_file=False, workflow_type=workflow_type, **overrides)
    workflow.initialize()
    missing = workflow.check_properties() if workflow_type else None
    if missing:
        raise RuntimeError(f"bundle config {name}.json lacks required properties: {missing}")
    workflow.run()
    workflow.finalize()
    return workflow
