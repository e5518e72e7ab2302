"""`mmdlr validate`: every problem of a manifest and its files, reported at once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import joblib
import numpy as np
import pandas as pd

from mmdlr.errors import ManifestError, case_problem
from mmdlr.io.dicom_masks import dicom_mask_kind
from mmdlr.io.limits import max_decoded_mb, set_max_decoded_mb
from mmdlr.io.loading import load_case_transforms
from mmdlr.io.manifest import LABEL_NAMES, Manifest, case_label
from mmdlr.io.readers import read_image
from mmdlr.parallel import ordered_results
from mmdlr.roi.cache import RoiSettings, roi_transforms

MAX_LABELS = 5  # a mask with more distinct non-zero values has grey edges rather than labels


@dataclass
class ValidationReport:
    """Problems found (empty when valid), warnings (valid but suspicious) and a per-modality summary table."""

    problems: list[str] = field(default_factory=list)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def non_binary_mask_warning(path: str | os.PathLike) -> str | None:
    """Say how a mask file that is not binary reads now, with its value counts and the option to use."""
    if dicom_mask_kind(path):  # SEG/RTSTRUCT: segments or ROIs, binary by construction
        return None
    values, counts = np.unique(read_image(path).array, return_counts=True)
    if len(values) <= 2:
        return None
    order = np.lexsort((values, -counts))  # most common first, then by value
    shown = ", ".join(f"{values[i]:g}: {counts[i]:,}" for i in order[:3])
    if len(values) > 3:
        shown += f", {len(values) - 3} other values: {counts[order[3:]].sum():,}"
    lesion_values = values[values != 0]
    if len(lesion_values) <= MAX_LABELS and np.all(lesion_values == np.round(lesion_values)):
        most_common = lesion_values[np.argmax(counts[values != 0])]
        option = f"--label-value {most_common:g} to keep one label"
    else:
        option = f"--mask-threshold {(values.min() + values.max()) / 2:g} to keep values at or above it"
    return f"mask is not binary (pixels per value: {shown}); every non-zero value is lesion now: use {option}"


def validate_manifest(path: str | os.PathLike, label_value: int | None = None, progress: bool = True,
                      mask_threshold: float | None = None, n_jobs: int = 1) -> ValidationReport:
    """Check the manifest's structure, then load every image and mask of every modality and cut its ROI
    (``n_jobs`` processes).

    Masks that are not binary are warnings when neither ``label_value`` nor ``mask_threshold`` is given.
    """
    try:
        manifest = Manifest.from_csv(path)
    except ManifestError as error:
        return ValidationReport(problems=error.problems)
    problems = manifest.structural_problems()
    if any("column" in p for p in problems):
        return ValidationReport(problems=problems)
    rows, warnings = [], []
    cases = [case for modality in manifest.modalities for case in manifest.cases(modality)
             if case["label"] is not None]
    jobs = [joblib.delayed(_check_case)(case, label_value, mask_threshold, max_decoded_mb()) for case in cases]
    with joblib.parallel_config(backend="loky", n_jobs=n_jobs):
        results = ordered_results(jobs, "validate", "image", progress, [case_label(case) for case in cases])
    loaded: dict[str, list[dict]] = {m: [] for m in manifest.modalities}
    for case, (item, problem, case_warnings) in zip(cases, results):
        if problem:
            problems.append(problem)
        else:
            loaded[case["modality"]].append(item)
        warnings += case_warnings
    for modality, items in loaded.items():
        labels = pd.Series([item["label"] for item in items], dtype=int)
        rows.append({
            "modality": modality,
            "patients": len(items),
            "missing": len(manifest.table) - len(manifest.cases(modality)),
            LABEL_NAMES[0]: int((labels == 0).sum()),
            LABEL_NAMES[1]: int((labels == 1).sum()),
            "dimensions": "/".join(sorted({f"{item['ndim']}D" for item in items})),
        } | ({"centers": ", ".join(f"{center} {n}" for center, n in pd.Series(
            [item["center"] for item in items], dtype=str).value_counts().sort_index().items())}
             if manifest.centers is not None else {}))
    return ValidationReport(problems=problems, summary=pd.DataFrame(rows), warnings=warnings)


def _check_case(case: dict, label_value: int | None, mask_threshold: float | None,
                limit_mb: float) -> tuple[dict | None, str | None, list[str]]:
    """Load one case and cut its ROI (in a worker, under the caller's decoded-size limit): its summary item, its
    one-line problem (then no item), and warnings about its masks."""
    set_max_decoded_mb(limit_mb)
    data = dict(case)
    try:
        data = load_case_transforms(label_value, mask_threshold=mask_threshold)(data)
        ndim = data["image"].ndim - 1
        for transform in roi_transforms(RoiSettings(label_value=label_value, mask_threshold=mask_threshold)):
            data = transform(data)
    except Exception as error:
        cause = case_problem(error, case)
        if cause is None:
            raise
        return None, f"{case['modality']}: {cause}", []
    warnings = []
    if label_value is None and mask_threshold is None:
        for mask_path in case["mask"]:
            if warning := non_binary_mask_warning(mask_path):
                warnings.append(f"{case['modality']}: patient {case['patient_id']}, file {mask_path}: {warning}")
    return {"label": case["label"], "ndim": ndim, "center": case["center"]}, None, warnings


