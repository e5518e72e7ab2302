"""MONAI dictionary transforms for the lesion ROI: largest slice of a volume, and bounding-box crop."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from mmdlr.errors import CaseError
from mmdlr.roi.box import largest_slice_index, lesion_box

VOLUME_SUFFIX = "_3d"


class SelectLargestLesionSliced(MapTransform):
    """Reduce (1, z, y, x) arrays to the slice where the lesion is largest; 2D input passes through.

    The full volumes stay available under ``"<key>_3d"`` (for 3D radiomics) and the chosen index
    under ``"slice_index"``.
    """

    def __init__(self, keys: KeysCollection = ("image", "mask"), mask_key: str = "mask"):
        super().__init__(keys)
        self.mask_key = mask_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        mask = np.asarray(d[self.mask_key])
        if mask.ndim != 4:
            return d
        index = largest_slice_index(mask[0])
        d["slice_index"] = index
        for key in self.key_iterator(d):
            volume = np.asarray(d[key])
            d[f"{key}{VOLUME_SUFFIX}"] = volume
            d[key] = volume[:, index]
            meta_key = f"{key}_meta"
            if meta_key in d:
                meta = dict(d[meta_key])
                meta["volume_spacing"] = tuple(meta["spacing"])
                meta["spacing"] = tuple(meta["spacing"])[1:]
                d[meta_key] = meta
        return d


class CropLesionROId(MapTransform):
    """Crop arrays to the mask's bounding box plus a margin (pixels or percent), clipped to the image.

    Volumes kept under ``"<key>_3d"`` are cropped to the 3D box too. The box goes to ``"roi_box"``.
    A NaN or infinite pixel inside a cropped ROI is a CaseError naming the patient and the image file.
    """

    def __init__(self, keys: KeysCollection = ("image", "mask"), mask_key: str = "mask",
                 margin: float = 10, margin_unit: str = "pixel"):
        super().__init__(keys)
        self.mask_key, self.margin, self.margin_unit = mask_key, margin, margin_unit

    def _crop(self, d: dict, mask_key: str, keys: list[str], box_key: str) -> None:
        box = lesion_box(np.asarray(d[mask_key])[0], self.margin, self.margin_unit)
        window = (slice(None), *(slice(low, high) for low, high in box))
        for key in keys:
            d[key] = np.asarray(d[key])[window]
            _check_finite(d, key)
        d[box_key] = box

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        keys = list(self.key_iterator(d))
        self._crop(d, self.mask_key, keys, "roi_box")
        volume_keys = [f"{key}{VOLUME_SUFFIX}" for key in keys if f"{key}{VOLUME_SUFFIX}" in d]
        if volume_keys:
            self._crop(d, f"{self.mask_key}{VOLUME_SUFFIX}", volume_keys, f"roi_box{VOLUME_SUFFIX}")
        return d


def _check_finite(d: dict, key: str) -> None:
    values = d[key]
    if not np.issubdtype(values.dtype, np.floating):
        return
    bad = values.size - int(np.count_nonzero(np.isfinite(values)))
    if bad:
        meta = d.get(f"{key.removesuffix(VOLUME_SUFFIX)}_meta") or {}
        raise CaseError(f"{bad} NaN/Inf pixel(s) inside the lesion ROI: replace them in the image (or fix the "
                        "mask if the lesion is outside the valid data)", d.get("patient_id"), meta.get("path"))
