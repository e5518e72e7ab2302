"""Bounding-box maths for lesion masks."""

from __future__ import annotations

import numpy as np


def lesion_box(mask: np.ndarray, margin: float = 0, margin_unit: str = "pixel") -> tuple[tuple[int, int], ...]:
    """Half-open (start, stop) per axis of the mask's bounding box grown by a margin, clipped to the array.

    ``margin_unit`` is ``"pixel"`` (voxels added on every side) or ``"percent"`` (of the box's extent
    along each axis, on every side).
    """
    if margin_unit not in ("pixel", "percent"):
        raise ValueError(f"margin_unit must be 'pixel' or 'percent', not {margin_unit!r}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, not {margin}")
    coords = np.nonzero(mask)
    if len(coords[0]) == 0:
        raise ValueError("mask is empty: no bounding box")
    box = []
    for axis, size in enumerate(mask.shape):
        low, high = int(coords[axis].min()), int(coords[axis].max()) + 1
        grow = margin if margin_unit == "pixel" else margin / 100.0 * (high - low)
        grow = int(np.ceil(grow))
        box.append((max(0, low - grow), min(size, high + grow)))
    return tuple(box)


def largest_slice_index(mask: np.ndarray) -> int:
    """Index along axis 0 of the slice with the largest lesion area (the paper's 'largest layer')."""
    areas = mask.reshape(mask.shape[0], -1).sum(axis=1)
    return int(np.argmax(areas))
