"""The case-loading chain shared by validation, ROI cropping, the bundle and the server."""

from __future__ import annotations

from monai.transforms import Compose

from mmdlr.io.transforms import CheckGeometryd, LoadGreyImaged, LoadLesionMaskd


def load_case_transforms(label_value: int | None = None, atol: float = 1e-3,
                         mask_threshold: float | None = None) -> Compose:
    """Image + mask union + geometry check, as one MONAI Compose."""
    return Compose([
        LoadGreyImaged(keys="image"),
        LoadLesionMaskd(keys="mask", label_value=label_value, threshold=mask_threshold),
        CheckGeometryd(image_key="image", mask_key="mask", atol=atol),
    ], unpack_items=False, map_items=False)
