"""Lesion regions in millimetres: the peritumoral ring, and small contour perturbations for robustness.

Distances are Euclidean in physical units (``scipy.ndimage.distance_transform_edt`` with the image's
spacing), so a ring of 3 mm is 3 mm wide along every axis of an anisotropic image.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform
from scipy.ndimage import distance_transform_edt, gaussian_filter

REGIONS = ("intratumoral", "peritumoral")
REGION_CHOICES = ("intratumoral", "peritumoral", "both")
PERTURBATION = re.compile(r"^(erode|dilate|jitter)_(\d+(?:\.\d+)?)(px|mm)$")


def region_names(setting: str) -> tuple[str, ...]:
    """``roi.regions`` -> the regions it extracts (``both``: intratumoral and peritumoral)."""
    return REGIONS if setting == "both" else (setting,)


def outside_distance(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distance (in the units of ``spacing``) of every pixel outside the lesion to the nearest lesion pixel."""
    return distance_transform_edt(~mask.astype(bool), sampling=spacing)


def inside_distance(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distance of every lesion pixel to the nearest pixel outside the lesion (0 outside)."""
    return distance_transform_edt(mask.astype(bool), sampling=spacing)


def peritumoral_ring(mask: np.ndarray, width_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Pixels outside the lesion within ``width_mm`` of it, clipped to the array (the image)."""
    lesion = mask.astype(bool)
    return (~lesion & (outside_distance(lesion, spacing) <= width_mm)).astype(np.uint8)


def parse_perturbation(name: str) -> tuple[str, float, str]:
    """``erode_1px`` / ``dilate_0.5mm`` / ``jitter_1px`` -> (kind, size, unit); ValueError naming the form."""
    match = PERTURBATION.match(name)
    if not match or float(match.group(2)) <= 0:
        raise ValueError(f"contour perturbation {name!r} must look like erode_1px, dilate_0.5mm or jitter_1px "
                         "(kind erode/dilate/jitter, a size > 0, unit px or mm)")
    return match.group(1), float(match.group(2)), match.group(3)


def perturb_mask(mask: np.ndarray, name: str, spacing: Sequence[float], seed: int = 0) -> np.ndarray:
    """The lesion mask eroded, dilated or its contour jittered by the size ``name`` states (px or mm).

    ``jitter``: the contour moves in and out by up to about the size, smoothly along it: the signed distance
    to the contour plus a smoothed Gaussian random field (standard deviation = the size), thresholded at 0.
    """
    kind, size, unit = parse_perturbation(name)
    sampling = [1.0] * mask.ndim if unit == "px" else list(spacing)
    lesion = mask.astype(bool)
    if kind == "erode":
        return (inside_distance(lesion, sampling) > size).astype(np.uint8)
    if kind == "dilate":
        return (lesion | (outside_distance(lesion, sampling) <= size)).astype(np.uint8)
    signed = outside_distance(lesion, sampling) - inside_distance(lesion, sampling)
    field = gaussian_filter(np.random.default_rng(seed).normal(size=mask.shape), sigma=2.0)
    field *= size / max(float(field.std()), 1e-12)
    return (signed - field < 0).astype(np.uint8)


def patient_seed(patient_id: object, seed: int = 0) -> int:
    """A seed fixed by the patient id and ``seed`` (the same jitter on every run)."""
    return zlib.crc32(f"{seed}|{patient_id}".encode())


class PeritumoralRingd(MapTransform):
    """Add ``"<key>_peritumoral"``: the ring of ``width_mm`` around the lesion in each mask key, computed with
    the spacing of ``meta_key`` (``spacing``; ``volume_spacing`` for keys ending ``_3d``). Run it before the
    crop, so the ring is clipped to the image only."""

    def __init__(self, keys: KeysCollection = ("mask",), width_mm: float = 3.0, meta_key: str = "image_meta",
                 allow_missing_keys: bool = True):
        super().__init__(keys, allow_missing_keys)
        self.width_mm, self.meta_key = width_mm, meta_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        meta = d[self.meta_key]
        for key in self.key_iterator(d):
            spacing = meta["volume_spacing"] if str(key).endswith("_3d") else meta["spacing"]
            mask = np.asarray(d[key])
            ring = peritumoral_ring(mask[0], self.width_mm, spacing)[None]
            d[ring_key(str(key))] = ring
            d[f"{ring_key(str(key))}_pixels"] = int(ring.sum())
        return d


class PerturbContourd(MapTransform):
    """Replace each mask key by its contour perturbation ``perturbation`` (see :func:`perturb_mask`), with
    the spacing in ``spacing_key`` and the patient's seed (:func:`patient_seed` of ``"patient_id"``)."""

    def __init__(self, keys: KeysCollection = ("mask",), perturbation: str = "erode_1px",
                 spacing_key: str = "spacing", seed: int = 0):
        super().__init__(keys)
        parse_perturbation(perturbation)
        self.perturbation, self.spacing_key, self.seed = perturbation, spacing_key, seed

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            mask = np.asarray(d[key])
            d[key] = perturb_mask(mask, self.perturbation, d[self.spacing_key],
                                  patient_seed(d.get("patient_id"), self.seed))
        return d


def ring_key(mask_key: str) -> str:
    """``mask`` -> ``mask_peritumoral``, ``mask_3d`` -> ``mask_peritumoral_3d``."""
    base, volume, _ = mask_key.partition("_3d")
    return f"{base}_peritumoral{volume}"
