"""Round trips through every supported image format, and clear errors for bad files."""

from __future__ import annotations

import io

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

from mmdlr.errors import CaseError
from mmdlr.io.readers import LUMINANCE_WEIGHTS, read_image, read_mask

from .dicom_cases import dicom_dataset

RNG = np.random.default_rng(0)
GREY8 = RNG.integers(0, 256, (40, 50), dtype=np.uint8)
GREY16 = RNG.integers(0, 4096, (40, 50), dtype=np.uint16)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_lossless_raster_round_trip(tmp_path, suffix):
    path = tmp_path / f"image{suffix}"
    Image.fromarray(GREY8).save(path)
    data = read_image(path)
    assert data.array.dtype == np.float32
    np.testing.assert_array_equal(data.array, GREY8)
    assert data.spacing == (1.0, 1.0) and not data.has_geometry


def test_sixteen_bit_png_keeps_values(tmp_path):
    path = tmp_path / "image16.png"
    Image.fromarray(GREY16).save(path)
    np.testing.assert_array_equal(read_image(path).array, GREY16)


def test_jpeg_is_read_approximately(tmp_path):
    smooth = np.tile(np.linspace(0, 255, 50, dtype=np.uint8), (40, 1))
    path = tmp_path / "image.jpg"
    Image.fromarray(smooth).save(path, quality=95)
    assert np.abs(read_image(path).array - smooth).mean() < 2


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_colour_becomes_luminance(tmp_path, mode):
    rgb = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    pixels = rgb if mode == "RGB" else np.dstack([rgb, np.full((20, 30), 128, np.uint8)])
    path = tmp_path / f"colour_{mode}.png"
    Image.fromarray(pixels, mode).save(path)
    expected = rgb.astype(float) @ LUMINANCE_WEIGHTS
    np.testing.assert_allclose(read_image(path).array, expected, atol=1e-3)


def test_palette_image_becomes_luminance_of_its_colours(tmp_path):
    rgb = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    palette = Image.fromarray(rgb).quantize(16)
    palette.save(tmp_path / "palette.png")
    expected = np.asarray(palette.convert("RGB")).astype(float) @ LUMINANCE_WEIGHTS
    np.testing.assert_allclose(read_image(tmp_path / "palette.png").array, expected, atol=1e-3)


def test_ybr_dicom_is_converted_to_rgb_once(tmp_path):
    rgb = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    ds = dicom_dataset(ybr[..., 0], SamplesPerPixel=3, PhotometricInterpretation="YBR_FULL",
                       PlanarConfiguration=0)
    ds.PixelData = ybr.tobytes()
    ds.save_as(tmp_path / "ybr.dcm", enforce_file_format=True)
    expected = rgb.astype(float) @ LUMINANCE_WEIGHTS
    assert np.abs(read_image(tmp_path / "ybr.dcm").array - expected).max() < 1.5  # YBR rounding only


def test_dicom_uncompressed_with_rescale_and_spacing(tmp_path):
    path = tmp_path / "mg.dcm"
    dicom_dataset(GREY16, RescaleSlope=2, RescaleIntercept=-10).save_as(path, enforce_file_format=True)
    data = read_image(path)
    np.testing.assert_array_equal(data.array, GREY16.astype(np.float32) * 2 - 10)
    assert data.spacing == (0.5, 0.25) and data.has_geometry
    assert data.tags["Modality"] == "MG"


def test_dicom_without_suffix_is_recognised(tmp_path):
    path = tmp_path / "IM0001"
    dicom_dataset(GREY16).save_as(path, enforce_file_format=True)
    np.testing.assert_array_equal(read_image(path).array, GREY16)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_dicom_lossless(tmp_path, syntax):
    ds = dicom_dataset(GREY16)
    ds.compress(syntax)
    path = tmp_path / "compressed.dcm"
    ds.save_as(path, enforce_file_format=True)
    data = read_image(path)
    assert data.tags["TransferSyntaxUID"] == str(syntax)
    np.testing.assert_array_equal(data.array, GREY16)


def test_compressed_dicom_jpeg_baseline(tmp_path):
    smooth = np.tile(np.linspace(0, 255, 48, dtype=np.uint8), (32, 1))
    buffer = io.BytesIO()
    Image.fromarray(smooth).save(buffer, format="JPEG", quality=95)
    ds = dicom_dataset(smooth)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].is_undefined_length = True
    path = tmp_path / "jpeg.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert np.abs(read_image(path).array - smooth).mean() < 2


def test_monochrome1_is_inverted(tmp_path):
    path = tmp_path / "mono1.dcm"
    dicom_dataset(GREY16, PhotometricInterpretation="MONOCHROME1").save_as(path, enforce_file_format=True)
    array = read_image(path).array
    np.testing.assert_array_equal(array, GREY16.max() + GREY16.min() - GREY16.astype(np.float32))


def test_dicom_series_sorted_by_position(tmp_path):
    volume = RNG.integers(0, 1000, (5, 16, 12), dtype=np.uint16)
    folder = tmp_path / "series"
    folder.mkdir()
    for z in range(5):
        ds = dicom_dataset(volume[z], ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                           ImagePositionPatient=[0, 0, 2.5 * z], InstanceNumber=5 - z)
        # file names in reverse order of position: the reader must sort by position, not by name
        ds.save_as(folder / f"slice_{4 - z:02d}.dcm", enforce_file_format=True)
    data = read_image(folder)
    np.testing.assert_array_equal(data.array, volume)
    assert data.spacing == (2.5, 0.5, 0.25)


def test_nifti_3d_and_2d_round_trip(tmp_path):
    volume = RNG.normal(size=(6, 20, 24)).astype(np.float32)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.7, 0.8, 3.0))
    sitk.WriteImage(image, str(tmp_path / "mr.nii.gz"))
    data = read_image(tmp_path / "mr.nii.gz")
    np.testing.assert_allclose(data.array, volume)
    assert data.spacing == pytest.approx((3.0, 0.8, 0.7))

    # a (1, y, x) volume, as ITK-SNAP exports a 2D segmentation, reads as 2D
    nib.save(nib.Nifti1Image(GREY8.T[:, :, None].astype(np.uint8), np.eye(4)), tmp_path / "flat.nii")
    flat = read_image(tmp_path / "flat.nii")
    assert flat.array.shape == GREY8.shape
    np.testing.assert_array_equal(flat.array, GREY8)


def test_nrrd_round_trip(tmp_path):
    volume = RNG.integers(0, 3, (4, 10, 12)).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(volume), str(tmp_path / "seg.nrrd"))
    np.testing.assert_array_equal(read_image(tmp_path / "seg.nrrd").array, volume)


def test_corrupt_missing_and_unknown_files_name_the_file(tmp_path):
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(CaseError, match="broken.png") as error:
        read_image(corrupt)
    assert error.value.path == str(corrupt)
    with pytest.raises(CaseError, match="file not found"):
        read_image(tmp_path / "absent.nii.gz")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CaseError, match="unsupported image format"):
        read_image(tmp_path / "notes.txt")
    truncated = tmp_path / "cut.dcm"
    dicom_dataset(GREY16).save_as(truncated, enforce_file_format=True)
    truncated.write_bytes(truncated.read_bytes()[:400])
    with pytest.raises(CaseError, match="cut.dcm"):
        read_image(truncated)


def test_mask_union_and_label_value(tmp_path):
    first, second = np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8)
    first[1:3, 1:3] = 255
    second[6:9, 6:9] = 255
    Image.fromarray(first).save(tmp_path / "m.png")
    Image.fromarray(second).save(tmp_path / "m_1.png")
    union = read_mask([tmp_path / "m.png", tmp_path / "m_1.png"])
    assert union.array.dtype == np.uint8 and union.array.sum() == 4 + 9

    labels = np.zeros((10, 10), np.uint8)
    labels[0:2, :] = 1
    labels[5, 5] = 2
    Image.fromarray(labels).save(tmp_path / "labels.png")
    assert read_mask(tmp_path / "labels.png", label_value=2).array.sum() == 1
    assert read_mask(tmp_path / "labels.png").array.sum() == 21

    Image.fromarray(np.zeros((12, 10), np.uint8)).save(tmp_path / "other.png")
    with pytest.raises(CaseError, match="differ in shape"):
        read_mask([tmp_path / "m.png", tmp_path / "other.png"])


def test_pydicom_decoders_are_installed():
    """Compressed transfer syntaxes need pylibjpeg's plugins; a missing one must fail here, not at a user."""
    from pydicom.pixels.decoders import JPEG2000LosslessDecoder, JPEGBaseline8BitDecoder, RLELosslessDecoder

    for decoder in (JPEG2000LosslessDecoder, JPEGBaseline8BitDecoder, RLELosslessDecoder):
        assert decoder.is_available, decoder.UID.name
    assert pydicom.__version__.startswith("3.")


def test_dicom_mask_with_label_value(tmp_path):
    labels = np.zeros((40, 50), np.uint16)
    labels[5:10, 5:10] = 1
    labels[20:30, 20:30] = 2
    dicom_dataset(labels).save_as(tmp_path / "seg.dcm", enforce_file_format=True)
    assert read_mask(tmp_path / "seg.dcm").array.sum() == 25 + 100
    assert read_mask(tmp_path / "seg.dcm", label_value=2).array.sum() == 100
    assert read_mask(tmp_path / "seg.dcm").spacing == (0.5, 0.25)
