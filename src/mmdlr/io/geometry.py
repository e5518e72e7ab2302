"""Image/mask geometry agreement."""

from __future__ import annotations

import numpy as np

from mmdlr.errors import CaseError
from mmdlr.io.readers import ImageData


def check_geometry(image: ImageData, mask: ImageData, patient_id: str | None = None, atol: float = 1e-3) -> None:
    """Raise CaseError unless image and mask share shape and, where both record it, spacing/origin/direction."""
    if image.ndim == 3 and mask.ndim == 2:
        raise CaseError(f"2D mask {mask.array.shape} given for a 3D volume {image.array.shape}: "
                        "export the mask as a volume with the same slices", patient_id, mask.path)
    if image.array.shape != mask.array.shape:
        raise CaseError(f"mask shape {mask.array.shape} does not match image shape {image.array.shape} "
                        f"({image.path})", patient_id, mask.path)
    if not (image.has_geometry and mask.has_geometry):
        return
    for name in ("spacing", "origin", "direction"):
        a, b = getattr(image, name), getattr(mask, name)
        if a and b and (len(a) != len(b) or not np.allclose(a, b, atol=atol, rtol=1e-4)):
            raise CaseError(f"mask {name} {tuple(round(v, 4) for v in b)} does not match image {name} "
                            f"{tuple(round(v, 4) for v in a)} ({image.path})", patient_id, mask.path)
