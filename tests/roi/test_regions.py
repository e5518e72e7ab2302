"""Peritumoral ring and contour perturbations in millimetres, and the ring in the ROI cache."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from mmdlr.errors import CaseError
from mmdlr.io.manifest import read_manifest
from mmdlr.roi.cache import RoiSettings, crop_case
from mmdlr.roi.regions import PeritumoralRingd, PerturbContourd, peritumoral_ring, perturb_mask


def square(shape=(40, 40), box=(slice(15, 25), slice(15, 25))) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[box] = 1
    return mask


def test_ring_width_is_millimetres_along_each_axis_of_anisotropic_pixels():
    mask = square()
    ring = peritumoral_ring(mask, 3.0, spacing=(0.5, 1.5))  # rows 0.5 mm apart, columns 1.5 mm
    rows, columns = np.nonzero(ring[:, 20]), np.nonzero(ring[20, :])
    assert (rows[0].min(), rows[0].max()) == (15 - 6, 25 + 5)  # 6 rows of 0.5 mm on each side
    assert (columns[0].min(), columns[0].max()) == (15 - 2, 25 + 1)  # 2 columns of 1.5 mm
    assert not (ring & mask).any()
    assert ring[15 - 6, 15 - 2] == 0  # the corner is farther than 3 mm (Euclidean)


def test_ring_is_clipped_to_the_image_and_in_3d_uses_the_volume_spacing():
    edge = square(box=(slice(0, 5), slice(0, 5)))
    ring = peritumoral_ring(edge, 2.0, (1.0, 1.0))
    assert ring.shape == edge.shape and ring[6, 0] == 1 and ring[7, 0] == 0
    volume = np.zeros((9, 20, 20), np.uint8)
    volume[4, 8:12, 8:12] = 1
    data = PeritumoralRingd(("mask", "mask_3d"), 2.0)({
        "mask": volume[None, 4], "mask_3d": volume[None],
        "image_meta": {"spacing": (1.0, 1.0), "volume_spacing": (2.0, 1.0, 1.0)}})
    ring_3d = data["mask_peritumoral_3d"][0]
    assert ring_3d[3, 10, 10] == 1 and ring_3d[2, 10, 10] == 0  # slices 2 mm apart: one slice above and below
    assert data["mask_peritumoral"][0, 10, 6] == 1 and data["mask_peritumoral"][0, 10, 5] == 0
    assert data["mask_peritumoral_pixels"] == int(data["mask_peritumoral"].sum())


def test_perturbations_erode_dilate_in_pixels_or_mm_and_jitter_reproducibly():
    mask, spacing = square(), (0.5, 0.5)
    assert perturb_mask(mask, "erode_1px", spacing).sum() == 8 * 8
    assert perturb_mask(mask, "dilate_1mm", spacing)[20, 13] == 1  # 2 pixels of 0.5 mm
    assert perturb_mask(mask, "dilate_1mm", spacing)[20, 12] == 0
    jittered = perturb_mask(mask, "jitter_1px", spacing, seed=1)
    assert np.array_equal(jittered, perturb_mask(mask, "jitter_1px", spacing, seed=1))
    assert not np.array_equal(jittered, perturb_mask(mask, "jitter_1px", spacing, seed=2))
    assert 0 < np.logical_xor(jittered, mask).sum() < mask.sum()  # the contour moved, the lesion stayed
    seeded = PerturbContourd(("mask",), "jitter_1px")({"mask": mask, "spacing": spacing, "patient_id": "P1"})
    assert np.array_equal(seeded["mask"], PerturbContourd(("mask",), "jitter_1px")(
        {"mask": mask, "spacing": spacing, "patient_id": "P1"})["mask"])
    with pytest.raises(ValueError, match="erode_1px, dilate_0.5mm or jitter_1px"):
        perturb_mask(mask, "shrink_1px", spacing)


def test_crop_cache_writes_the_ring_and_refuses_a_margin_narrower_than_it(small_cohort, tmp_path):
    case = read_manifest(small_cohort).cases("us")[0]
    row = crop_case(case, tmp_path / "roi", RoiSettings(regions="both", peritumoral_mm=3.0, margin=10))
    lesion = sitk.ReadImage(f"{row['roi_dir']}/mask.nii.gz")
    ring = sitk.GetArrayFromImage(sitk.ReadImage(f"{row['roi_dir']}/mask_peritumoral.nii.gz"))
    spacing = lesion.GetSpacing()[::-1]
    expected = peritumoral_ring(sitk.GetArrayFromImage(lesion), 3.0, spacing)
    assert ring.sum() > 0 and np.array_equal(ring, expected)
    with pytest.raises(CaseError, match="raise roi.margin"):
        crop_case(case, tmp_path / "narrow", RoiSettings(regions="both", peritumoral_mm=30.0, margin=2))
