"""`mmdlr demo-data`: a synthetic multimodal cohort in real file formats, with its manifest.

US as 8-bit PNG (some RGB, with a coloured caliper mark), MG craniocaudal as 16-bit DICOM with
plausible tags (one RLE-compressed) and a NIfTI mask, MRI-T2 as 3D NIfTI volumes with 3D masks.
Each patient has a latent malignancy state; each modality sees it through its own noise, so single
modalities are informative but imperfect and fusing them helps. Same seed -> same files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from mmdlr.atomic import atomic_path
from mmdlr.io.writers import write_nifti
from mmdlr.synthetic.lesions import LesionShape, mammogram, mri_t2, ultrasound

MODALITIES = ("us", "mg", "mr")
US_SIZE, US_SPACING = 256, 0.25
MG_SIZE, MG_SPACING = 320, 0.3
MR_SIZE, MR_SLICES, MR_SPACING = 128, 20, (3.0, 0.6, 0.6)


@dataclass(frozen=True)
class CohortSettings:
    """Size and difficulty of the synthetic cohort."""

    patients: int = 60
    seed: int = 0
    benign_fraction: float = 0.35
    missing_rate: float = 0.1
    class_separation: float = 2.0
    modality_noise: float = 1.0
    test_fraction: float = 0.2
    rgb_fraction: float = 0.2


def _sigmoid(x: float) -> float:
    return float(1 / (1 + np.exp(-x)))


def _write_png(array: np.ndarray, path: Path, rgb_caliper: bool, rng: np.random.Generator) -> None:
    if rgb_caliper:
        array = np.repeat(array[..., None], 3, axis=2)
        r, c = rng.integers(10, array.shape[0] - 10, 2)
        array[r - 4: r + 5, c] = (255, 255, 0)
        array[r, c - 4: c + 5] = (255, 255, 0)
    Image.fromarray(array).save(path)


def _write_mammogram_dicom(pixels: np.ndarray, path: Path, patient_id: str, seed: int, compress: bool) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (DigitalMammographyXRayImageStorageForPresentation, ExplicitVRLittleEndian,
                             RLELossless, generate_uid)

    def uid(kind: str) -> str:
        return generate_uid(entropy_srcs=[str(seed), patient_id, kind])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalMammographyXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = uid("sop")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid("study"), uid("series")
    ds.PatientID, ds.PatientName, ds.PatientSex = patient_id, f"SYNTHETIC^{patient_id}", "F"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20230101"
    ds.Modality, ds.ViewPosition, ds.ImageLaterality = "MG", "CC", "L"
    ds.Manufacturer, ds.BodyPartExamined = "mmdlr synthetic", "BREAST"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.PixelSpacing = ds.ImagerPixelSpacing = [MG_SPACING, MG_SPACING]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
    if compress:
        ds.compress(RLELossless)
    ds.save_as(path, enforce_file_format=True)


def _clinical(rng: np.random.Generator, malignant: bool, diameter: float) -> dict:
    age = float(np.clip(rng.normal(53 if malignant else 45, 11), 22, 88))
    birads_weights = [0.05, 0.2, 0.5, 0.2, 0.05] if malignant else [0.45, 0.4, 0.1, 0.04, 0.01]
    return {"age": round(age, 1), "diameter_mm": round(diameter, 1),
            "birads": str(rng.choice(["3", "4a", "4b", "4c", "5"], p=birads_weights)),
            "ca153": round(float(max(2.0, rng.normal(22 if malignant else 18, 9))), 1),
            "menopause": "post" if age + rng.normal(0, 4) > 50 else "pre"}


def _patient(index: int, settings: CohortSettings, out: Path, benign: bool, test: bool) -> dict:
    """Generate one patient's images and return its manifest row."""
    rng = np.random.default_rng([settings.seed, index])
    pid = f"P{index + 1:04d}"
    malignant = not benign
    latent = rng.normal((0.5 if malignant else -0.5) * settings.class_separation, 1.0)
    diameter = float(np.clip(rng.normal(24 if malignant else 17, 7), 7, 45))
    row = {"patient_id": pid, "label": "malignant" if malignant else "benign",
           "split": "test" if test else "train", "group": ""}
    present = [m for m in MODALITIES if rng.random() >= settings.missing_rate] or [str(rng.choice(MODALITIES))]
    for modality in MODALITIES:
        row[f"{modality}_image"] = row[f"{modality}_mask"] = ""
        malignancy = _sigmoid(latent + rng.normal(0, settings.modality_noise))
        if modality not in present:
            continue
        if modality == "us":
            shape = LesionShape.sample(rng, min(diameter / 2 / US_SPACING, US_SIZE * 0.3), malignancy)
            image, mask = ultrasound(rng, US_SIZE, shape, malignancy)
            image_name, mask_name = f"us/{pid}.png", f"us/{pid}_mask.png"
            _write_png(image, out / image_name, rng.random() < settings.rgb_fraction, rng)
            Image.fromarray(mask.astype(np.uint8) * 255).save(out / mask_name)
        elif modality == "mg":
            shape = LesionShape.sample(rng, min(diameter / 2 / MG_SPACING, MG_SIZE * 0.25), malignancy)
            image, mask = mammogram(rng, MG_SIZE, shape, malignancy)
            image_name, mask_name = f"mg/{pid}.dcm", f"mg/{pid}_mask.nii.gz"
            _write_mammogram_dicom(image, out / image_name, pid, settings.seed, compress=index == 0)
            write_nifti(mask.astype(np.uint8), (MG_SPACING, MG_SPACING), out / mask_name)
        else:
            shape = LesionShape.sample(rng, min(diameter / 2 / MR_SPACING[1], MR_SIZE * 0.3), malignancy)
            image, mask = mri_t2(rng, MR_SIZE, MR_SLICES, shape, malignancy)
            image_name, mask_name = f"mr/{pid}.nii.gz", f"mr/{pid}_mask.nii.gz"
            write_nifti(image, MR_SPACING, out / image_name)
            write_nifti(mask.astype(np.uint8), MR_SPACING, out / mask_name)
        row[f"{modality}_image"], row[f"{modality}_mask"] = image_name, mask_name
    return row | _clinical(rng, malignant, diameter)


def _assign_classes(settings: CohortSettings) -> tuple[np.ndarray, np.ndarray]:
    """Benign flags (exact benign fraction) and a stratified test flag per patient."""
    rng = np.random.default_rng([settings.seed, 10**6])
    n = settings.patients
    benign = np.zeros(n, dtype=bool)
    benign[rng.permutation(n)[: max(1, round(settings.benign_fraction * n))]] = True
    test = np.zeros(n, dtype=bool)
    for cls in (True, False):
        members = rng.permutation(np.flatnonzero(benign == cls))
        test[members[: round(settings.test_fraction * len(members))]] = True
    return benign, test


def generate_cohort(out_dir: str | os.PathLike, settings: CohortSettings = CohortSettings(),
                    progress: bool = True) -> Path:
    """Write the cohort under ``out_dir`` (replacing an earlier generated cohort) and return the manifest."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / "manifest.csv").exists():
        raise FileExistsError(f"{out} exists and is not a generated cohort; choose an empty or new folder")
    if settings.patients < 4:
        raise ValueError("a cohort needs at least 4 patients")
    benign, test = _assign_classes(settings)
    with atomic_path(out, directory=True) as temp:
        for modality in MODALITIES:
            (temp / modality).mkdir()
        rows = [_patient(i, settings, temp, bool(benign[i]), bool(test[i]))
                for i in tqdm(range(settings.patients), desc="demo cohort", unit="patient", disable=not progress)]
        pd.DataFrame(rows).to_csv(temp / "manifest.csv", index=False)
    return out / "manifest.csv"
