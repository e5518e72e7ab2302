"""`mmdlr demo-data`: a synthetic multimodal cohort in real file formats, with its manifest.

US as 8-bit PNG (some RGB, with a coloured caliper mark), MG craniocaudal as 16-bit DICOM with
plausible tags (one RLE-compressed) and a NIfTI mask, MRI-T2 as 3D NIfTI volumes with 3D masks.
Each patient has a latent malignancy state; each modality sees it through its own noise, so single
modalities are informative but imperfect and fusing them helps. Same seed -> same files.

With ``centers`` > 1 the patients are spread over centres A, B, ... (both classes in each; manifest column
``center``), each imaged by its own scanners (:class:`Scanner`): intensity scale and offset, added noise,
pixel spacing and image size (the same field of view), and bit depth (US as 16-bit PNG, MG with another
BitsStored). Centre A's scanners are those of a one-centre cohort.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from PIL import Image

from mmdlr.atomic import atomic_path
from mmdlr.io.writers import write_nifti
from mmdlr.parallel import ordered_results
from mmdlr.synthetic.lesions import LesionShape, mammogram, mri_t2, ultrasound

MODALITIES = ("us", "mg", "mr")
US_SIZE, US_SPACING = 256, 0.25
MG_SIZE, MG_SPACING = 320, 0.3
MR_SIZE, MR_SLICES, MR_SPACING = 128, 20, (3.0, 0.6, 0.6)
CENTER_NAMES = tuple("ABCDEFGH")


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
    centers: int = 1


@dataclass(frozen=True)
class Scanner:
    """One centre's imaging chain: ``scale`` and ``offset`` on intensities in [0, 1] of the modality's range,
    Gaussian ``noise`` (same units), ``spacing_factor`` times the pixel spacing (image size divided by it), and
    bit depths (US PNG 8 or 16, MG DICOM BitsStored)."""

    scale: float = 1.0
    offset: float = 0.0
    noise: float = 0.0
    spacing_factor: float = 1.0
    us_bits: int = 8
    mg_bits: int = 12

    @classmethod
    def of_center(cls, center: int, seed: int) -> "Scanner":
        """Centre 0 (A): the one-centre scanners. Others, seeded: darker with finer pixels, 16-bit US and MG
        BitsStored 16 (odd centres), or brighter with coarser pixels and MG BitsStored 10 (even centres)."""
        if center == 0:
            return cls()
        rng = np.random.default_rng([seed, 10**6 + 1, center])
        odd = center % 2 == 1
        return cls(scale=rng.uniform(0.6, 0.75) if odd else rng.uniform(1.25, 1.4),
                   offset=rng.uniform(0.08, 0.15) if odd else rng.uniform(-0.12, -0.06),
                   noise=rng.uniform(0.02, 0.05), spacing_factor=0.8 if odd else 1.25,
                   us_bits=16 if odd else 8, mg_bits=16 if odd else 10)

    def apply(self, image: np.ndarray, full_scale: float, rng: np.random.Generator) -> np.ndarray:
        """``image`` (values in [0, ``full_scale``]) as this scanner records it, as floats in [0, 1]."""
        recorded = image / full_scale * self.scale + self.offset
        if self.noise:
            recorded = recorded + self.noise * rng.standard_normal(image.shape)
        return np.clip(recorded, 0, 1)

    def size(self, size: int) -> int:
        return round(size / self.spacing_factor)


def _sigmoid(x: float) -> float:
    return float(1 / (1 + np.exp(-x)))


def _write_png(array: np.ndarray, path: Path, rgb_caliper: bool, rng: np.random.Generator) -> None:
    if rgb_caliper:
        array = np.repeat(array[..., None], 3, axis=2)
        r, c = rng.integers(10, array.shape[0] - 10, 2)
        array[r - 4: r + 5, c] = (255, 255, 0)
        array[r, c - 4: c + 5] = (255, 255, 0)
    Image.fromarray(array).save(path)


def _write_mammogram_dicom(pixels: np.ndarray, path: Path, patient_id: str, seed: int, compress: bool,
                           bits_stored: int = 12, spacing: float = MG_SPACING) -> None:
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
    ds.PixelSpacing = ds.ImagerPixelSpacing = [spacing, spacing]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits_stored, bits_stored - 1, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
    if compress:
        ds.compress(RLELossless, generate_instance_uid=False)  # keep the seeded UID: same seed, same file
    ds.save_as(path, enforce_file_format=True)


def _clinical(rng: np.random.Generator, malignant: bool, diameter: float) -> dict:
    age = float(np.clip(rng.normal(53 if malignant else 45, 11), 22, 88))
    birads_weights = [0.05, 0.2, 0.5, 0.2, 0.05] if malignant else [0.45, 0.4, 0.1, 0.04, 0.01]
    return {"age": round(age, 1), "diameter_mm": round(diameter, 1),
            "birads": str(rng.choice(["3", "4a", "4b", "4c", "5"], p=birads_weights)),
            "ca153": round(float(max(2.0, rng.normal(22 if malignant else 18, 9))), 1),
            "menopause": "post" if age + rng.normal(0, 4) > 50 else "pre"}


def _patient(index: int, settings: CohortSettings, out: Path, benign: bool, test: bool, center: int) -> dict:
    """Generate one patient's images, as ``center``'s scanners record them, and return its manifest row."""
    rng = np.random.default_rng([settings.seed, index])
    scanner = Scanner.of_center(center, settings.seed)
    recorded = scanner != Scanner()  # centre A writes the generated arrays as they are
    scanner_rng = np.random.default_rng([settings.seed, index, 10**6 + 3])
    pid = f"P{index + 1:04d}"
    malignant = not benign
    latent = rng.normal((0.5 if malignant else -0.5) * settings.class_separation, 1.0)
    diameter = float(np.clip(rng.normal(24 if malignant else 17, 7), 7, 45))
    row = {"patient_id": pid, "label": "malignant" if malignant else "benign",
           "split": "test" if test else "train", "group": ""}
    if settings.centers > 1:
        row["center"] = CENTER_NAMES[center]
    present = [m for m in MODALITIES if rng.random() >= settings.missing_rate] or [str(rng.choice(MODALITIES))]
    for modality in MODALITIES:
        row[f"{modality}_image"] = row[f"{modality}_mask"] = ""
        malignancy = _sigmoid(latent + rng.normal(0, settings.modality_noise))
        if modality not in present:
            continue
        if modality == "us":
            spacing, size = US_SPACING * scanner.spacing_factor, scanner.size(US_SIZE)
            shape = LesionShape.sample(rng, min(diameter / 2 / spacing, size * 0.3), malignancy)
            image, mask = ultrasound(rng, size, shape, malignancy)
            if recorded:
                image = _quantise(scanner.apply(image, 255, scanner_rng), scanner.us_bits)
            image_name, mask_name = f"us/{pid}.png", f"us/{pid}_mask.png"
            rgb_caliper = rng.random() < settings.rgb_fraction and image.dtype == np.uint8
            _write_png(image, out / image_name, rgb_caliper, rng)
            Image.fromarray(mask.astype(np.uint8) * 255).save(out / mask_name)
        elif modality == "mg":
            spacing, size = MG_SPACING * scanner.spacing_factor, scanner.size(MG_SIZE)
            shape = LesionShape.sample(rng, min(diameter / 2 / spacing, size * 0.25), malignancy)
            image, mask = mammogram(rng, size, shape, malignancy)
            if recorded:
                image = _quantise(scanner.apply(image, 4095, scanner_rng), scanner.mg_bits)
            image_name, mask_name = f"mg/{pid}.dcm", f"mg/{pid}_mask.nii.gz"
            _write_mammogram_dicom(image, out / image_name, pid, settings.seed, index == 0, scanner.mg_bits, spacing)
            write_nifti(mask.astype(np.uint8), (spacing, spacing), out / mask_name)
        else:
            spacing = (MR_SPACING[0], *(s * scanner.spacing_factor for s in MR_SPACING[1:]))
            size = scanner.size(MR_SIZE)
            shape = LesionShape.sample(rng, min(diameter / 2 / spacing[1], size * 0.3), malignancy)
            image, mask = mri_t2(rng, size, MR_SLICES, shape, malignancy)
            if recorded:  # T2 signal in [0, 2000]
                image = np.round(scanner.apply(image, 2000, scanner_rng) * 2000).astype(np.int16)
            image_name, mask_name = f"mr/{pid}.nii.gz", f"mr/{pid}_mask.nii.gz"
            write_nifti(image, spacing, out / image_name)
            write_nifti(mask.astype(np.uint8), spacing, out / mask_name)
        row[f"{modality}_image"], row[f"{modality}_mask"] = image_name, mask_name
    return row | _clinical(rng, malignant, diameter)


def _quantise(image: np.ndarray, bits: int) -> np.ndarray:
    """Intensities in [0, 1] as ``bits``-bit unsigned integers (uint8 up to 8 bits, else uint16)."""
    return np.round(image * (2**bits - 1)).astype(np.uint8 if bits <= 8 else np.uint16)


def _assign_centers(settings: CohortSettings, benign: np.ndarray) -> np.ndarray:
    """Each patient's centre index: every class dealt round the centres in a seeded order (both classes at
    every centre)."""
    rng = np.random.default_rng([settings.seed, 10**6 + 2])
    centers = np.zeros(len(benign), dtype=int)
    for cls in (True, False):
        members = rng.permutation(np.flatnonzero(benign == cls))
        centers[members] = np.arange(len(members)) % settings.centers
    return centers


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
                    progress: bool = True, n_jobs: int = 1) -> Path:
    """Write the cohort under ``out_dir`` (replacing an earlier generated cohort) in ``n_jobs`` processes and
    return the manifest; every patient has its own seeded generator, so ``n_jobs`` changes no file."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / "manifest.csv").exists():
        raise FileExistsError(f"{out} exists and is not a generated cohort; choose an empty or new folder")
    if settings.patients < 4:
        raise ValueError("a cohort needs at least 4 patients")
    if not 1 <= settings.centers <= len(CENTER_NAMES):
        raise ValueError(f"centers must be from 1 to {len(CENTER_NAMES)}, got {settings.centers}")
    benign, test = _assign_classes(settings)
    if min(benign.sum(), (~benign).sum()) < settings.centers:
        raise ValueError(f"{settings.centers} centers need at least {settings.centers} benign and {settings.centers} "
                         f"malignant patients; have {benign.sum()} and {(~benign).sum()}: add patients")
    centers = _assign_centers(settings, benign)
    with atomic_path(out, directory=True) as temp:
        for modality in MODALITIES:
            (temp / modality).mkdir()
        jobs = [joblib.delayed(_patient)(i, settings, temp, bool(benign[i]), bool(test[i]), int(centers[i]))
                for i in range(settings.patients)]
        with joblib.parallel_config(backend="loky", n_jobs=n_jobs):
            rows = ordered_results(jobs, "demo cohort", "patient", progress)
        pd.DataFrame(rows).to_csv(temp / "manifest.csv", index=False)
    return out / "manifest.csv"
