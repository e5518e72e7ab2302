"""ROI crops written once per patient and modality, reused while inputs and settings are unchanged.

Layout: ``OUT/roi/<mod>/<patient_id>/{image,mask}.nii.gz`` (the 2D ROI of the chosen slice), plus
``{image,mask}_3d.nii.gz`` for volumes, and ``roi.json`` holding the cache key and the box.
``OUT/roi/roi_index.csv`` lists every crop.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from mmdlr.atomic import atomic_path, remove_temporaries, write_csv
from mmdlr.errors import CaseError, case_problem
from mmdlr.io.dicom_masks import split_mask_path
from mmdlr.io.limits import max_decoded_mb, set_max_decoded_mb
from mmdlr.io.loading import load_case_transforms
from mmdlr.io.manifest import Manifest, case_label
from mmdlr.io.writers import write_nifti
from mmdlr.parallel import ordered_results
from mmdlr.pipeline.stages import code_version
from mmdlr.roi.regions import PeritumoralRingd, region_names
from mmdlr.roi.transforms import CropLesionROId, SelectLargestLesionSliced

ROI_FILES = ("image", "mask")
INDEX_COLUMNS = ["patient_id", "modality", "label", "split", "group", "center", "roi_dir", "ndim",
                 "slice_index", "roi_shape", "lesion_pixels"]


@dataclass(frozen=True)
class RoiSettings:
    """How ROIs are cut: margin around the mask's box (pixels or percent), and which mask values are lesion
    (any non-zero value, the label value, or values at least the mask threshold); ``regions``: intratumoral,
    peritumoral (a ring of ``peritumoral_mm`` around the lesion, also ``mask_peritumoral.nii.gz``) or both."""

    margin: float = 10
    margin_unit: str = "pixel"
    label_value: int | None = None
    mask_threshold: float | None = None
    regions: str = "intratumoral"
    peritumoral_mm: float = 3.0


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, or of every file of a folder (a DICOM series) in name order."""
    path = Path(path)
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()) if path.is_dir() else [path]:
        if file.is_file():
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def roi_cache_key(case: dict, settings: RoiSettings, code: str) -> str:
    """Hash of the input files' contents, the ROI settings and the code version (``code_version()``: any
    change to mmdlr's source makes every crop stale)."""
    content = {
        "image": file_digest(case["image"]),
        "mask": [file_digest(file) + ("" if choice is None else f"#{choice}")  # a SEG segment, an RTSTRUCT ROI
                 for file, choice in map(split_mask_path, case["mask"])],
        "settings": asdict(settings),
        "code": code,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def roi_transforms(settings: RoiSettings):
    """Largest slice (volumes), the peritumoral ring (if a region), then bounding-box crop, with the given settings."""
    ring = "peritumoral" in region_names(settings.regions)
    return [SelectLargestLesionSliced(keys=("image", "mask"), mask_key="mask"),
            *([PeritumoralRingd(("mask", "mask_3d"), settings.peritumoral_mm)] if ring else []),
            CropLesionROId(keys=("image", "mask", *(["mask_peritumoral"] if ring else [])), mask_key="mask",
                           margin=settings.margin, margin_unit=settings.margin_unit)]


def crop_case(case: dict, roi_root: str | os.PathLike, settings: RoiSettings = RoiSettings(),
              code: str | None = None) -> dict:
    """Crop one case's ROI into the cache (or reuse it) and return its index row; ``code``: the code version
    (computed when not given)."""
    target = Path(roi_root) / case["modality"] / str(case["patient_id"])
    key = roi_cache_key(case, settings, code or code_version())
    record_path = target / "roi.json"
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("key") == key:
            return _index_row(case, target, record)
    data = load_case_transforms(settings.label_value, mask_threshold=settings.mask_threshold)(dict(case))
    for transform in roi_transforms(settings):
        data = transform(data)
    _require_ring_inside(data, case, settings)
    spacing = data["image_meta"]["spacing"]
    record = {"key": key, "roi_box": [list(b) for b in data["roi_box"]], "spacing": list(spacing),
              "roi_box_3d": [list(b) for b in data.get("roi_box_3d", ())],
              "ndim": 3 if "image_3d" in data else 2, "slice_index": data.get("slice_index"),
              "roi_shape": list(np.asarray(data["image"]).shape[1:]),
              "lesion_pixels": int(np.asarray(data["mask"]).sum()), "settings": asdict(settings)}
    with atomic_path(target, directory=True) as temp:
        for name in [name for name in (*ROI_FILES, "mask_peritumoral") if name in data]:
            write_nifti(np.asarray(data[name])[0], spacing, temp / f"{name}.nii.gz")
            if f"{name}_3d" in data:
                write_nifti(np.asarray(data[f"{name}_3d"])[0], data["image_meta"]["volume_spacing"],
                             temp / f"{name}_3d.nii.gz")
        (temp / "roi.json").write_text(json.dumps(record, indent=1))
    return _index_row(case, target, record)


def _require_ring_inside(data: dict, case: dict, settings: RoiSettings) -> None:
    """A CaseError if the crop cut off part of the peritumoral ring (the margin is narrower than the ring)."""
    for key in ("mask_peritumoral", "mask_peritumoral_3d"):
        if key in data and int(np.asarray(data[key]).sum()) < data[f"{key}_pixels"]:
            raise CaseError(f"the {settings.peritumoral_mm} mm peritumoral ring reaches beyond the ROI crop's margin "
                            f"({settings.margin} {settings.margin_unit}): raise roi.margin (--margin) to at least the "
                            "ring's width in pixels", case["patient_id"], case["image"])


def _index_row(case: dict, target: Path, record: dict) -> dict:
    return {"patient_id": case["patient_id"], "modality": case["modality"], "label": case["label"],
            "split": case["split"], "group": case["group"], "center": case.get("center", ""), "roi_dir": str(target),
            "ndim": record["ndim"],
            "slice_index": record["slice_index"], "roi_shape": "x".join(map(str, record["roi_shape"])),
            "lesion_pixels": record["lesion_pixels"]}


def crop_cohort(manifest: Manifest, out_dir: str | os.PathLike, settings: RoiSettings = RoiSettings(),
                progress: bool = True, n_jobs: int = 1) -> pd.DataFrame:
    """Crop every patient's ROI for every modality in ``n_jobs`` processes; raise one CaseError listing all
    failures."""
    roi_root = Path(out_dir) / "roi"
    cases = [case for modality in manifest.modalities for case in manifest.cases(modality)]
    code = code_version()
    jobs = [joblib.delayed(_crop_or_failure)(case, roi_root, settings, code, max_decoded_mb()) for case in cases]
    try:
        with joblib.parallel_config(backend="loky", n_jobs=n_jobs):
            results = ordered_results(jobs, "crop ROIs", "roi", progress, [case_label(case) for case in cases])
    except BaseException:  # Ctrl-C, SIGTERM or an error: joblib kills the workers, some of them mid-write
        for modality in manifest.modalities:
            remove_temporaries(roi_root / modality)
        raise
    failures = [failure for _, failure in results if failure]
    if failures:
        raise CaseError(f"{len(failures)} ROI(s) failed (no index written):\n  " + "\n  ".join(failures))
    index = pd.DataFrame([row for row, _ in results], columns=INDEX_COLUMNS)
    write_csv(index, roi_root / "roi_index.csv")
    return index


def _crop_or_failure(case: dict, roi_root: Path, settings: RoiSettings, code: str,
                     limit_mb: float) -> tuple[dict | None, str | None]:
    """:func:`crop_case` in a worker under the caller's decoded-size limit: (index row, None), or (None, the
    case's one-line failure)."""
    set_max_decoded_mb(limit_mb)
    try:
        return crop_case(case, roi_root, settings, code), None
    except Exception as error:
        cause = case_problem(error, case)
        if cause is None:
            raise
        return None, f"{case['modality']}: {cause}"
