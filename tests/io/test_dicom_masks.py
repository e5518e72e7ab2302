"""DICOM SEG (written with highdicom) and RTSTRUCT (written with rt-utils, or by hand) masks give the same
lesion, on the same grid and geometry, as the equivalent NIfTI mask; references to another image are refused
naming both files."""

from __future__ import annotations

import warnings

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid

from mmdlr.errors import CaseError, find_case_error
from mmdlr.io.dicom_masks import split_mask_path
from mmdlr.io.limits import ENVIRONMENT_KEY
from mmdlr.io.loading import load_case_transforms
from mmdlr.io.validate import validate_manifest

from .dicom_cases import dicom_series

SPACING, ORIGIN = (2.5, 0.5, 0.25), (-20.0, 30.0, 7.0)  # (z, row, column) mm; first slice's (x, y, z) mm


@pytest.fixture(autouse=True)
def quiet_writers():
    with warnings.catch_warnings():  # highdicom and rt-utils warn about optional attributes of test data
        warnings.simplefilter("ignore")
        yield


def lesions(shape=(5, 12, 10)) -> dict[str, np.ndarray]:
    """Two lesions of a (z, y, x) grid; the tumour has a hole."""
    tumour, node = np.zeros(shape, bool), np.zeros(shape, bool)
    tumour[1:4, 3:8, 2:6] = True
    tumour[2, 5, 3] = False
    node[3:5, 8:11, 6:9] = True
    return {"tumour": tumour, "node": node}


def write_seg(path, sources: list[Dataset], masks: dict[str, np.ndarray],
              kind=hd.seg.SegmentationTypeValues.BINARY) -> None:
    """One segment per mask, numbered from 1 in order, over ``sources`` (one dataset per slice)."""
    descriptions = [hd.seg.SegmentDescription(
        segment_number=number, segment_label=label,
        segmented_property_category=hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure"),
        segmented_property_type=hd.sr.CodedConcept("108369006", "SCT", "Neoplasm"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL) for number, label in enumerate(masks, start=1)]
    pixels = np.stack(list(masks.values()), axis=-1)  # bool for BINARY, fractions in [0, 1] for FRACTIONAL
    pixels = pixels.astype(np.uint8) if pixels.dtype == bool else pixels.astype(np.float32)
    hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels, segmentation_type=kind, segment_descriptions=descriptions,
        series_instance_uid=generate_uid(), series_number=2, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="test", manufacturer_model_name="test", software_versions="1", device_serial_number="1",
    ).save_as(path)


def write_nifti_mask(path, mask: np.ndarray, spacing=SPACING, origin=ORIGIN) -> None:
    """The NIfTI an ITK-SNAP user would save for the same lesion (numpy-order spacing, patient origin)."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(spacing[::-1])
    image.SetOrigin(origin[: mask.ndim])
    sitk.WriteImage(image, str(path))


def load(image, *masks) -> dict:
    return load_case_transforms()({"patient_id": "P1", "image": str(image), "mask": [str(m) for m in masks]})


def load_error(image, *masks) -> str:
    """The CaseError that loading raises, as the user reads it."""
    with pytest.raises(Exception) as error:
        load(image, *masks)
    cause = find_case_error(error.value)
    assert cause is not None, error.value
    return str(cause)


def assert_same_lesion(image, dicom_mask, nifti_mask) -> None:
    """Same voxels as the NIfTI mask (which the geometry check accepts on the image), the image's geometry."""
    dicom, nifti = load(image, dicom_mask), load(image, nifti_mask)
    assert nifti["mask"].any()
    np.testing.assert_array_equal(dicom["mask"], nifti["mask"])
    for name in ("spacing", "origin"):
        assert dicom["mask_meta"][name] == pytest.approx(dicom["image_meta"][name])


@pytest.fixture
def series(tmp_path):
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 1000, (5, 12, 10)).astype(np.uint16)
    return tmp_path / "series", dicom_series(tmp_path / "series", volume, SPACING, ORIGIN)


def test_seg_over_a_series_equals_nifti_per_segment_and_united(tmp_path, series):
    folder, datasets = series
    masks = lesions()
    # highdicom takes frames in source order: sources and frames reversed, the SEG maps to the same slices
    write_seg(tmp_path / "seg.dcm", datasets[::-1], {name: mask[::-1] for name, mask in masks.items()})
    for name, mask in masks.items():
        write_nifti_mask(tmp_path / f"{name}.nii.gz", mask)
    write_nifti_mask(tmp_path / "both.nii.gz", masks["tumour"] | masks["node"])
    assert_same_lesion(folder, tmp_path / "seg.dcm", tmp_path / "both.nii.gz")
    assert_same_lesion(folder, f"{tmp_path / 'seg.dcm'}#tumour", tmp_path / "tumour.nii.gz")
    assert_same_lesion(folder, f"{tmp_path / 'seg.dcm'}#2", tmp_path / "node.nii.gz")
    message = load_error(folder, f"{tmp_path / 'seg.dcm'}#vessel")
    assert "has no segment 'vessel' (segments: 1 'tumour', 2 'node')" in message


def test_fractional_seg_is_lesion_from_half(tmp_path, series):
    folder, datasets = series
    fraction = lesions()["tumour"] * 0.6 + lesions()["node"] * 0.4
    write_seg(tmp_path / "seg.dcm", datasets, {"tumour": fraction}, hd.seg.SegmentationTypeValues.FRACTIONAL)
    write_nifti_mask(tmp_path / "tumour.nii.gz", lesions()["tumour"])
    assert_same_lesion(folder, tmp_path / "seg.dcm", tmp_path / "tumour.nii.gz")


def test_seg_over_a_single_frame_image_is_2d(tmp_path):
    folder = tmp_path / "one"
    [dataset] = dicom_series(folder, np.arange(120, dtype=np.uint16).reshape(1, 12, 10), SPACING, ORIGIN)
    image = folder / "001.dcm"
    mask = lesions()["tumour"][2]
    write_seg(tmp_path / "seg.dcm", [dataset], {"tumour": mask[None]})
    write_nifti_mask(tmp_path / "mask.nii.gz", mask, SPACING[1:], ORIGIN)
    assert_same_lesion(image, tmp_path / "seg.dcm", tmp_path / "mask.nii.gz")
    assert load(image, tmp_path / "seg.dcm")["mask"].shape == (1, 12, 10)
    assert load(folder, tmp_path / "seg.dcm")["mask"].shape == (1, 12, 10)  # one-file folder: 2D too


def test_rtstruct_written_by_rt_utils_equals_nifti(tmp_path):
    from rt_utils import RTStructBuilder

    # rt-utils swaps rows and columns of non-square slices and their spacing: square, isotropic in-plane
    folder = tmp_path / "series"
    spacing = (2.5, 0.5, 0.5)
    dicom_series(folder, np.ones((5, 12, 12), np.uint16), spacing, ORIGIN)
    masks = lesions((5, 12, 12))
    builder = RTStructBuilder.create_new(dicom_series_path=str(folder))
    for name, mask in (("GTV #1 tumour", masks["tumour"]), ("node", masks["node"])):
        builder.add_roi(mask=np.moveaxis(mask, 0, -1), name=name)  # rt-utils' masks are (y, x, z)
    builder.save(str(tmp_path / "rt.dcm"))
    write_nifti_mask(tmp_path / "tumour.nii.gz", masks["tumour"], spacing)
    assert_same_lesion(folder, f"{tmp_path / 'rt.dcm'}#GTV #1 tumour", tmp_path / "tumour.nii.gz")
    message = load_error(folder, f"{tmp_path / 'rt.dcm'}#GTV")
    assert "has no ROI named 'GTV' (ROIs: 'GTV #1 tumour', 'node')" in message
    message = load_error(folder, tmp_path / "rt.dcm")
    assert "holds 2 ROIs ('GTV #1 tumour', 'node'): name one as rt.dcm#<ROI name>" in message


def structure_set(image: Dataset, contours_mm: list[np.ndarray], name="lesion", reference=True) -> Dataset:
    """A minimal RTSTRUCT with one ROI of closed planar contours (points (x, y, z) in mm) on ``image``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = RTStructureSetStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Modality = "RTSTRUCT"
    roi = Dataset()
    roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = 1, name, image.FrameOfReferenceUID
    ds.StructureSetROISequence = Sequence([roi])
    contours = []
    for points in contours_mm:
        contour = Dataset()
        contour.ContourGeometricType, contour.NumberOfContourPoints = "CLOSED_PLANAR", len(points)
        contour.ContourData = [f"{v:g}" for v in np.ravel(points)]
        if reference:
            item = Dataset()
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = image.SOPClassUID, image.SOPInstanceUID
            contour.ContourImageSequence = Sequence([item])
        contours.append(contour)
    roi_contour = Dataset()
    roi_contour.ReferencedROINumber, roi_contour.ContourSequence = 1, Sequence(contours)
    ds.ROIContourSequence = Sequence([roi_contour])
    return ds


@pytest.mark.parametrize("reference", [True, False], ids=["by-sop-reference", "by-position"])
def test_hand_written_rtstruct_on_non_square_anisotropic_image(tmp_path, reference):
    folder = tmp_path / "one"
    [image] = dicom_series(folder, np.ones((1, 12, 10), np.uint16), SPACING, ORIGIN)

    def mm(row_col):  # pixel centres (row, column) -> patient (x, y, z)
        rows, columns = np.asarray(row_col, float).T
        return np.stack([ORIGIN[0] + columns * SPACING[2], ORIGIN[1] + rows * SPACING[1],
                         np.full(rows.shape, ORIGIN[2])], axis=1)

    outer = mm([(3, 2), (3, 6), (8, 6), (8, 2)])
    hole = mm([(5, 3), (6, 4), (7, 3), (6, 2)])  # a diamond: only its centre pixel is outside the lesion
    structure_set(image, [outer, hole], reference=reference).save_as(tmp_path / "rt.dcm", enforce_file_format=True)
    expected = np.zeros((12, 10), np.uint8)
    expected[3:9, 2:7] = 1
    expected[6, 3] = 0
    write_nifti_mask(tmp_path / "mask.nii.gz", expected, SPACING[1:], ORIGIN)
    assert_same_lesion(folder / "001.dcm", tmp_path / "rt.dcm#lesion", tmp_path / "mask.nii.gz")


def test_masks_of_another_image_are_refused_naming_both_files(tmp_path, series):
    folder, datasets = series
    other = dicom_series(tmp_path / "other", np.ones((5, 12, 10), np.uint16), SPACING, ORIGIN)
    write_seg(tmp_path / "other_seg.dcm", other, {"tumour": lesions()["tumour"]})
    structure_set(other[2], [np.array([[-19.0, 31.5, 12.0], [-18.0, 31.5, 12.0], [-18.0, 33.0, 12.0]])]
                  ).save_as(tmp_path / "other_rt.dcm", enforce_file_format=True)
    for mask in ("other_seg.dcm", "other_rt.dcm"):
        message = load_error(folder, tmp_path / mask)
        assert f"file {tmp_path / mask}: its Frame of Reference UID" in message and str(folder) in message

    same_frame = dicom_series(tmp_path / "resliced", np.ones((5, 12, 10), np.uint16), SPACING, ORIGIN,
                              FrameOfReferenceUID=datasets[0].FrameOfReferenceUID)
    write_seg(tmp_path / "resliced_seg.dcm", same_frame, {"tumour": lesions()["tumour"]})
    message = load_error(folder, tmp_path / "resliced_seg.dcm")
    assert "references 5 image instance(s) not in image" in message and str(folder) in message


def test_dicom_masks_need_a_dicom_image_and_hash_only_chooses_in_them(tmp_path, series):
    folder, datasets = series
    write_seg(tmp_path / "seg.dcm", datasets, {"tumour": lesions()["tumour"]})
    write_nifti_mask(tmp_path / "image.nii.gz", np.ones((5, 12, 10)))
    assert "a DICOM SEG mask needs its DICOM image" in load_error(tmp_path / "image.nii.gz", tmp_path / "seg.dcm")
    write_nifti_mask(tmp_path / "lesion#1.nii.gz", lesions()["tumour"])  # '#' in an ordinary file name
    assert split_mask_path(tmp_path / "lesion#1.nii.gz") == (tmp_path / "lesion#1.nii.gz", None)
    assert load(folder, tmp_path / "lesion#1.nii.gz")["mask"].sum() == lesions()["tumour"].sum()
    write_nifti_mask(tmp_path / "lesion.nii.gz", lesions()["tumour"])
    message = load_error(folder, f"{tmp_path / 'lesion.nii.gz'}#1")
    assert f"'#1' chooses a segment or ROI, but {tmp_path / 'lesion.nii.gz'} is not a DICOM SEG" in message


def test_seg_sizes_are_checked_before_decoding(tmp_path, monkeypatch):
    folder = tmp_path / "series"
    datasets = dicom_series(folder, np.ones((5, 12, 10), np.uint8), SPACING, ORIGIN)
    write_seg(tmp_path / "seg.dcm", datasets, lesions())
    monkeypatch.setenv(ENVIRONMENT_KEY, repr(1000 / 2**20))  # the 8-bit image and one segment (600 B) fit
    assert "declares 2 segment(s) on 10×12×5" in load_error(folder, tmp_path / "seg.dcm")
    assert load(folder, f"{tmp_path / 'seg.dcm'}#1")["mask"].any()
    huge = pydicom.dcmread(tmp_path / "seg.dcm")
    huge.NumberOfFrames = 100_000
    huge.save_as(tmp_path / "huge.dcm")
    assert "declares 10×12×100000 frames" in load_error(folder, tmp_path / "huge.dcm")


def test_manifest_with_seg_and_rtstruct_cells_validates(tmp_path, series):
    folder, datasets = series
    write_seg(tmp_path / "seg.dcm", datasets, lesions())
    centre = datasets[2]
    structure_set(centre, [np.array([[-19.0, 31.5, 12.0], [-18.0, 31.5, 12.0], [-18.0, 33.0, 12.0]])],
                  name="GTV").save_as(tmp_path / "rt.dcm", enforce_file_format=True)
    (tmp_path / "cohort.csv").write_text("patient_id,label,mr_image,mr_mask\n"
                                         "P1,benign,series,seg.dcm#tumour\n"
                                         "P2,malignant,series,rt.dcm#GTV;seg.dcm#node\n")
    report = validate_manifest(tmp_path / "cohort.csv", progress=False)
    assert report.ok, report.problems
    assert report.warnings == []
    assert report.summary["dimensions"].tolist() == ["3D"]
