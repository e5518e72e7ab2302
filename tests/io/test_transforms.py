"""Loading transforms: channel-first arrays, empty masks and geometry mismatches named by patient."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from mmdlr.errors import CaseError, find_case_error
from mmdlr.io.loading import load_case_transforms
from mmdlr.io.writers import write_nifti


def case(image, mask, patient_id="P1"):
    return {"patient_id": patient_id, "image": str(image), "mask": [str(m) for m in mask]}


def test_loads_png_pair_channel_first(tmp_path):
    Image.fromarray(np.full((20, 30), 100, np.uint8)).save(tmp_path / "i.png")
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:15] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    out = load_case_transforms()(case(tmp_path / "i.png", [tmp_path / "m.png"]))
    assert out["image"].shape == (1, 20, 30) and out["image"].dtype == np.float32
    assert out["mask"].shape == (1, 20, 30) and out["mask"].sum() == 50
    assert out["image_meta"]["path"].endswith("i.png")


def test_empty_mask_names_patient_and_file(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "i.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(Exception) as raised:
        load_case_transforms()(case(tmp_path / "i.png", [tmp_path / "m.png"], "P042"))
    error = find_case_error(raised.value)
    assert error is not None and error.patient_id == "P042" and error.path.endswith("m.png")
    assert "mask is empty" in str(error)


def test_shape_mismatch(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "i.png")
    Image.fromarray(np.ones((8, 9), np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(Exception) as raised:
        load_case_transforms()(case(tmp_path / "i.png", [tmp_path / "m.png"]))
    assert "does not match image shape" in str(find_case_error(raised.value))


def test_spacing_mismatch_and_2d_mask_for_volume(tmp_path):
    volume = np.zeros((4, 10, 10), np.float32)
    write_nifti(volume, (3.0, 0.5, 0.5), tmp_path / "v.nii.gz")
    mask = np.zeros((4, 10, 10), np.uint8)
    mask[1, 2:4, 2:4] = 1
    write_nifti(mask, (3.0, 0.7, 0.5), tmp_path / "m.nii.gz")
    with pytest.raises(Exception) as raised:
        load_case_transforms()(case(tmp_path / "v.nii.gz", [tmp_path / "m.nii.gz"]))
    assert "spacing" in str(find_case_error(raised.value))

    write_nifti(mask, (3.0, 0.5, 0.5), tmp_path / "ok.nii.gz")
    assert load_case_transforms()(case(tmp_path / "v.nii.gz", [tmp_path / "ok.nii.gz"]))["mask"].sum() == 4

    Image.fromarray(np.ones((10, 10), np.uint8)).save(tmp_path / "flat.png")
    with pytest.raises(Exception) as raised:
        load_case_transforms()(case(tmp_path / "v.nii.gz", [tmp_path / "flat.png"]))
    assert "2D mask" in str(find_case_error(raised.value))


def test_origin_mismatch(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((3, 6, 6), np.float32))
    sitk.WriteImage(image, str(tmp_path / "v.nii.gz"))
    mask = sitk.GetImageFromArray(np.ones((3, 6, 6), np.uint8))
    mask.SetOrigin((5.0, 0.0, 0.0))
    sitk.WriteImage(mask, str(tmp_path / "m.nii.gz"))
    with pytest.raises(Exception) as raised:
        load_case_transforms()(case(tmp_path / "v.nii.gz", [tmp_path / "m.nii.gz"]))
    assert isinstance(find_case_error(raised.value), CaseError)
    assert "origin" in str(find_case_error(raised.value))


def test_mask_threshold_keeps_values_at_or_above_it(tmp_path):
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(tmp_path / "i.png")
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 255
    mask[1, 1:6] = 40  # grey edge
    Image.fromarray(mask).save(tmp_path / "m.png")
    loaded = load_case_transforms(mask_threshold=128)(case(tmp_path / "i.png", [tmp_path / "m.png"]))
    assert loaded["mask"].sum() == 9
    assert load_case_transforms()(case(tmp_path / "i.png", [tmp_path / "m.png"]))["mask"].sum() == 14
    with pytest.raises(Exception) as raised:
        load_case_transforms(mask_threshold=256)(case(tmp_path / "i.png", [tmp_path / "m.png"], "P9"))
    assert "mask is empty (no lesion voxel with value at least 256)" in str(find_case_error(raised.value))
    with pytest.raises(ValueError, match="not both"):
        load_case_transforms(label_value=1, mask_threshold=128)
