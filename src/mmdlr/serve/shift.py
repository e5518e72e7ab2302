"""Shift warnings: how far a new case's inputs lie from the cases the run's models were trained on.

The reference is derived when a run folder is loaded, from what the folder already holds, per modality:
the image format and bit depth of the cohort's images (their headers, read from the paths in
``manifest.csv``; left out while those files are not reachable), the in-plane pixel spacing and the
intensity range (1st-99th percentile) of every ROI crop under ``roi/<mod>/``, and the mean and SD of
every feature of ``features/{radiomics,deep}_<mod>.csv``. A new case is out of range when its format or
bit depth was never seen, its spacing lies outside the training range, its ROI's intensities reach
beyond the training range by more than a tenth of its span, or at least ``FEATURE_SHARE`` of a feature
family's values lie beyond ``Z_LIMIT`` SDs of the training mean.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mmdlr.analysis.features import TABLE_FAMILIES, feature_names
from mmdlr.io.manifest import Manifest
from mmdlr.io.readers import ITK_SUFFIXES, dicom_headers, image_kind, read_image

log = logging.getLogger(__name__)

Z_LIMIT = 5.0
FEATURE_SHARE = 0.25
INTENSITY_MARGIN = 0.1  # of the training intensity span
SPACING_TOLERANCE = 0.05  # relative
INTENSITY_PERCENTILES = (1, 99)
FAMILY_NAMES = {"radiomics": "radiomic", "deep": "deep"}
PIL_BITS = {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16, "I": 32, "F": 32}


def image_source(path: str | os.PathLike) -> str:
    """Bit depth and format of an image from its header alone: '8-bit PNG', '16-bit DICOM', '32-bit NIfTI'."""
    path = Path(path)
    kind = image_kind(path)
    if kind in ("dicom", "dicom_series"):
        header = dicom_headers(path)[0]
        return f"{int(header.get('BitsStored') or header.get('BitsAllocated') or 8)}-bit DICOM"
    if kind == "itk":
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        bits = 8 * sitk.GetArrayViewFromImage(sitk.Image([1] * reader.GetDimension(), reader.GetPixelID())).itemsize
        suffix = next(s for s in ITK_SUFFIXES if path.name.lower().endswith(s))
        return f"{bits}-bit {'NIfTI' if suffix.startswith('.nii') else suffix.lstrip('.').upper()}"
    from PIL import Image

    with Image.open(path) as image:
        return f"{PIL_BITS.get(image.mode, 8)}-bit {image.format}"


def roi_intensity(roi_dir: Path) -> tuple[float, float]:
    """1st and 99th percentile of a cached ROI crop's pixels (``roi_dir/image.nii.gz``)."""
    low, high = np.percentile(read_image(roi_dir / "image.nii.gz").array, INTENSITY_PERCENTILES)
    return float(low), float(high)


def roi_spacing(roi_dir: Path) -> np.ndarray:
    """In-plane pixel spacing (mm) of a cached ROI crop, from its ``roi.json``."""
    return np.asarray(json.loads((roi_dir / "roi.json").read_text())["spacing"][-2:], dtype=float)


def _span(low: float, high: float, unit: str = "") -> str:
    return f"{low:.4g}{unit}" if np.isclose(low, high) else f"{low:.4g}-{high:.4g}{unit}"


@dataclass(frozen=True)
class ModalityReference:
    """What one modality's training cases looked like (see the module docstring)."""

    sources: tuple[str, ...]
    spacing: tuple[np.ndarray, np.ndarray]  # per in-plane axis: lowest, highest
    intensity: tuple[float, float]
    features: dict[str, pd.DataFrame]  # family -> mean and sd per feature

    def reasons(self, image: Path, roi_dir: Path, features: Mapping[str, Mapping[str, float]]) -> list[str]:
        """What is out of the training range for a case whose ROI was cropped into ``roi_dir``."""
        found = []
        source = image_source(image)
        if self.sources and source not in self.sources:
            found.append(f"{source} while the model was trained on {' and '.join(self.sources)}")
        spacing, (low, high) = roi_spacing(roi_dir), self.spacing
        if ((spacing < low * (1 - SPACING_TOLERANCE)) | (spacing > high * (1 + SPACING_TOLERANCE))).any():
            found.append(f"spacing {' x '.join(f'{s:.3g}' for s in spacing)} mm outside training "
                         f"{_span(low.min(), high.max(), ' mm')}")
        (train_low, train_high), (case_low, case_high) = self.intensity, roi_intensity(roi_dir)
        margin = INTENSITY_MARGIN * max(train_high - train_low, 1e-12)
        if case_low < train_low - margin or case_high > train_high + margin:
            found.append(f"ROI intensity {_span(case_low, case_high)} outside training {_span(train_low, train_high)}")
        for family, values in features.items():
            stats = self.features.get(family)
            if stats is None:
                continue
            case = pd.to_numeric(pd.Series(values, dtype=object).reindex(stats.index), errors="coerce")
            z = (case - stats["mean"]) / stats["sd"]
            beyond = int((z.abs() > Z_LIMIT).sum())
            if beyond and beyond >= FEATURE_SHARE * len(stats):
                found.append(f"{beyond} of {len(stats)} {FAMILY_NAMES[family]} features beyond {Z_LIMIT:g} SD")
        return found


def _feature_stats(table_path: Path) -> pd.DataFrame | None:
    if not table_path.is_file():
        return None
    table = pd.read_csv(table_path)
    values = table[feature_names(table)].select_dtypes("number")
    array = values.to_numpy(dtype=float)
    with warnings.catch_warnings():  # a feature without values (all NaN) gets a NaN SD and is left out below
        warnings.simplefilter("ignore", RuntimeWarning)
        stats = pd.DataFrame({"mean": np.nanmean(array, axis=0), "sd": np.nanstd(array, axis=0, ddof=1)},
                             index=values.columns)
    return stats[np.isfinite(stats["sd"]) & (stats["sd"] > 0)]


def _sources(manifest: Manifest, modality: str) -> tuple[str, ...]:
    """Formats of the cohort's images of ``modality``; empty when none of its files is reachable."""
    found = []
    for case in manifest.cases(modality):
        try:
            found.append(image_source(case["image"]))
        except (OSError, ValueError):
            continue
    return tuple(dict.fromkeys(found))


def modality_reference(run_dir: Path, manifest: Manifest, modality: str) -> ModalityReference | None:
    """The training reference of one modality, or None when the run folder holds no ROI crops of it."""
    roi_dirs = [path.parent for path in sorted((run_dir / "roi" / modality).glob("*/roi.json"))]
    if not roi_dirs:
        return None
    spacings = np.array([roi_spacing(folder) for folder in roi_dirs])
    intensities = np.array([roi_intensity(folder) for folder in roi_dirs])
    sources = _sources(manifest, modality)
    if not sources:
        log.warning("the training images of modality %s are not reachable from %s/manifest.csv: new cases are "
                    "not checked for another image format or bit depth", modality, run_dir)
    features = {family: stats for family in TABLE_FAMILIES
                if (stats := _feature_stats(run_dir / "features" / f"{family}_{modality}.csv")) is not None}
    return ModalityReference(sources, (spacings.min(axis=0), spacings.max(axis=0)),
                             (float(intensities[:, 0].min()), float(intensities[:, 1].max())), features)


class TrainingReference:
    """Per modality, the run's training distribution; names what lies outside it for a new case."""

    def __init__(self, modalities: Mapping[str, ModalityReference | None]):
        self.modalities = dict(modalities)

    @classmethod
    def from_run_dir(cls, run_dir: str | os.PathLike, modalities: list[str]) -> TrainingReference:
        run_dir = Path(run_dir)
        manifest = Manifest.from_csv(run_dir / "manifest.csv")
        return cls({modality: modality_reference(run_dir, manifest, modality) for modality in modalities})

    def warning(self, patient_id: str | None, modality: str, image: Path, roi_dir: Path,
                features: Mapping[str, Mapping[str, float]]) -> str | None:
        """One line naming the patient, the modality and everything out of range, or None when nothing is."""
        reference = self.modalities.get(modality)
        reasons = reference.reasons(image, roi_dir, features) if reference is not None else []
        if not reasons:
            return None
        return f"{f'patient {patient_id}, ' if patient_id else ''}{modality}: {'; '.join(reasons)}"
