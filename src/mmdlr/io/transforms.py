"""MONAI dictionary transforms that load a case's image and lesion mask.

Outputs are channel-first numpy arrays, spatial axes in numpy order; geometry goes to ``"<key>_meta"``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from os import PathLike

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from mmdlr.errors import CaseError
from mmdlr.io.geometry import check_geometry
from mmdlr.io.readers import ImageData, read_image, read_mask

META_SUFFIX = "_meta"


def _meta(data: ImageData) -> dict:
    return {"spacing": data.spacing, "origin": data.origin, "direction": data.direction,
            "path": data.path, "has_geometry": data.has_geometry, "tags": data.tags}


def _as_image_data(array: np.ndarray, meta: Mapping) -> ImageData:
    return ImageData(array=np.asarray(array)[0], spacing=tuple(meta["spacing"]), origin=tuple(meta["origin"]),
                     direction=tuple(meta["direction"]), path=meta["path"], has_geometry=meta["has_geometry"])


class LoadGreyImaged(MapTransform):
    """Replace a path under each key by the grey float32 image (1, *spatial) and its geometry."""

    def __init__(self, keys: KeysCollection = "image", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            try:
                image = read_image(d[key])
            except CaseError as error:
                raise CaseError(error.reason, d.get("patient_id"), error.path) from error
            d[key] = image.array[None]
            d[f"{key}{META_SUFFIX}"] = _meta(image)
        return d


class LoadLesionMaskd(MapTransform):
    """Replace mask path(s) under each key by their union as uint8 (1, *spatial); an empty mask is an error.

    Lesion is any non-zero value, or ``label_value``, or values at least ``threshold`` (see ``read_mask``).
    DICOM SEG/RTSTRUCT masks are matched to and rasterised onto the image under ``image_key`` (its path,
    or the path in its ``"<image_key>_meta"`` once loaded).
    """

    def __init__(self, keys: KeysCollection = "mask", label_value: int | None = None,
                 allow_missing_keys: bool = False, *, threshold: float | None = None, image_key: str = "image"):
        super().__init__(keys, allow_missing_keys)
        if label_value is not None and threshold is not None:
            raise ValueError("give a mask label value or a mask threshold, not both")
        self.label_value, self.threshold, self.image_key = label_value, threshold, image_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            paths = d[key]
            image_meta = d.get(f"{self.image_key}{META_SUFFIX}")
            image = image_meta["path"] if isinstance(image_meta, Mapping) else d.get(self.image_key)
            try:
                mask = read_mask(paths if isinstance(paths, Sequence) and not isinstance(paths, str) else [paths],
                                 self.label_value, self.threshold,
                                 image if isinstance(image, (str, PathLike)) else None)
            except CaseError as error:
                raise CaseError(error.reason, d.get("patient_id"), error.path) from error
            if not mask.array.any():
                which = (f" with label value {self.label_value}" if self.label_value is not None else
                         f" with value at least {self.threshold:g}" if self.threshold is not None else "")
                raise CaseError(f"mask is empty (no lesion voxel{which})", d.get("patient_id"), mask.path)
            d[key] = mask.array[None]
            d[f"{key}{META_SUFFIX}"] = _meta(mask)
        return d


class CheckGeometryd(MapTransform):
    """Raise CaseError unless the loaded mask matches the loaded image in shape and geometry."""

    def __init__(self, image_key: str = "image", mask_key: str = "mask", atol: float = 1e-3):
        super().__init__([image_key, mask_key])
        self.image_key, self.mask_key, self.atol = image_key, mask_key, atol

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        image = _as_image_data(d[self.image_key], d[f"{self.image_key}{META_SUFFIX}"])
        mask = _as_image_data(d[self.mask_key], d[f"{self.mask_key}{META_SUFFIX}"])
        check_geometry(image, mask, d.get("patient_id"), self.atol)
        return d
