"""Writing arrays as NIfTI with their spacing (ROI cache, synthetic cohort)."""

from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk


def write_nifti(array: np.ndarray, spacing, path: str | os.PathLike) -> None:
    """Write a numpy-order array ((y, x) or (z, y, x)) and its numpy-order spacing as (gzipped) NIfTI."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing([float(s) for s in tuple(spacing)[::-1]])
    sitk.WriteImage(image, str(path), useCompression=str(path).endswith(".gz"))
