"""Lesion masks stored the way PACS exports them: DICOM Segmentation (SEG) and RT Structure Set (RTSTRUCT).

A mask cell names the file, optionally followed by ``#<choice>``:

- SEG (read with highdicom): ``seg.dcm`` unites every segment; ``seg.dcm#2`` or ``seg.dcm#tumour`` keeps
  the segment of that number or label. Fractional segments are lesion where the fraction is at least 0.5.
- RTSTRUCT: ``rt.dcm#GTV`` rasterises the ROI named GTV onto the image (``rt.dcm`` alone when the file
  holds one ROI). Each closed planar contour is filled on the slice it references, its outline included;
  contours of one slice combine by even-odd parity, so a contour inside another is a hole (rt-utils' and
  OpenCV's convention).

The mask is matched to its image, a DICOM file or series folder, by Frame of Reference UID and by the SOP
Instance UIDs it references, and takes the image's geometry. A ``#`` belongs to the path when the whole
cell names an existing file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydicom.uid import RTStructureSetStorage, SegmentationStorage

from mmdlr.errors import CaseError
from mmdlr.io.readers import (ImageData, dicom_headers, dicom_image_data, image_kind, read_dicom, refuse_above_limit,
                              refuse_lying_frames, slice_position, squeeze_single_slice)

CHOICE_SEPARATOR = "#"
MASK_KINDS = {SegmentationStorage: "SEG", RTStructureSetStorage: "RTSTRUCT"}
FRACTION_IN_LESION = 0.5


def split_mask_path(path: str | os.PathLike) -> tuple[Path, str | None]:
    """The file a mask cell names and the segment or ROI chosen after ``#`` (None when none is)."""
    text = str(path)
    if Path(text).exists():
        return Path(text), None
    for index, character in enumerate(text):
        if character == CHOICE_SEPARATOR and Path(text[:index]).is_file():
            return Path(text[:index]), text[index + 1:]
    return Path(text), None


def dicom_mask_kind(path: str | os.PathLike) -> str | None:
    """'SEG' or 'RTSTRUCT' when the mask cell names such a DICOM file, else None."""
    file, choice = split_mask_path(path)
    if not file.is_file() or image_kind(file) != "dicom":
        kind = None
    else:
        try:
            kind = MASK_KINDS.get(read_dicom(file, stop_before_pixels=True,
                                             specific_tags=["SOPClassUID"]).get("SOPClassUID"))
        except Exception:  # not readable as DICOM: the image reader names the problem
            kind = None
    if choice is not None and kind is None:
        raise CaseError(f"'{CHOICE_SEPARATOR}{choice}' chooses a segment or ROI, but {file} is not a DICOM SEG "
                        "or RTSTRUCT file", path=str(path))
    return kind


def read_dicom_mask(path: str | os.PathLike, image: str | os.PathLike | None) -> ImageData:
    """The lesion of a SEG or RTSTRUCT mask cell as a uint8 0/1 array on ``image``'s grid and geometry."""
    file, choice = split_mask_path(path)
    kind = dicom_mask_kind(path)
    if image is None or image_kind(image) not in ("dicom", "dicom_series"):
        raise CaseError(f"a DICOM {kind} mask needs its DICOM image (file or series folder), "
                        f"not {image or 'none'}", path=str(file))
    headers = dicom_headers(image)
    frames = int(headers[0].get("NumberOfFrames", 1) or 1)
    shape = (max(len(headers), frames), int(headers[0].Rows), int(headers[0].Columns))
    refuse_above_limit(file, "a mask of " + "×".join(map(str, shape[::-1])), int(np.prod(shape)))
    try:
        read = _segmentation_lesion if kind == "SEG" else _structure_set_lesion
        lesion = read(file, choice, headers, Path(image), shape)
    except CaseError:
        raise
    except Exception as error:  # a malformed SEG/RTSTRUCT
        raise CaseError(f"cannot read DICOM {kind} ({type(error).__name__}: {error})", path=str(file)) from error
    if frames == 1 and not Path(image).is_dir():  # a single-frame file is a 2D image
        lesion = lesion[0]
    data = dicom_image_data(image, headers, lesion.astype(np.uint8))
    data.path = str(path)
    return squeeze_single_slice(data)


def _check_frame_of_reference(uid: str | None, headers: list, file: Path, image: Path) -> None:
    image_uid = headers[0].get("FrameOfReferenceUID")
    if uid and image_uid and uid != image_uid:
        raise CaseError(f"its Frame of Reference UID {uid} is not that of image {image} ({image_uid}): "
                        "give the image the mask was drawn on", path=str(file))


def _refuse_unknown_references(referenced: set[str], headers: list, file: Path, image: Path) -> None:
    image_uids = {str(ds.SOPInstanceUID) for ds in headers}
    missing = referenced - image_uids
    if missing:
        raise CaseError(f"references {len(missing)} image instance(s) not in image {image} (e.g. SOP Instance UID "
                     f"{sorted(missing)[0]}; the image has {len(image_uids)}): give the image the mask "
                        "was drawn on", path=str(file))


def _segmentation_lesion(file: Path, choice: str | None, headers: list, image: Path,
                         shape: tuple[int, int, int]) -> np.ndarray:
    import highdicom

    # refuses a SEG declaring too many frames, or compressed frames larger than declared, before decoding
    refuse_lying_frames(file, dicom_headers(file)[0])
    segmentation = highdicom.seg.segread(file)
    _check_frame_of_reference(segmentation.get("FrameOfReferenceUID"), headers, file, image)
    _refuse_unknown_references({str(uid) for *_, uid in segmentation.get_source_image_uids()}, headers, file, image)
    numbers = _chosen_segments(segmentation, choice, file)
    refuse_above_limit(file, f"{len(numbers)} segment(s) on " + "×".join(map(str, shape[::-1])),
                       int(np.prod(shape)) * len(numbers))
    options = {"segment_numbers": numbers, "assert_missing_frames_are_empty": True}
    if int(headers[0].get("NumberOfFrames", 1) or 1) > 1:
        pixels = segmentation.get_pixels_by_source_frame(
            str(headers[0].SOPInstanceUID), list(range(1, shape[0] + 1)), **options)
    else:
        pixels = segmentation.get_pixels_by_source_instance([str(ds.SOPInstanceUID) for ds in headers], **options)
    if segmentation.SegmentationType == "FRACTIONAL":
        return (pixels >= FRACTION_IN_LESION).any(axis=-1)
    return (pixels > 0).any(axis=-1)


def _chosen_segments(segmentation, choice: str | None, file: Path) -> list[int]:
    segments = {int(item.SegmentNumber): str(item.SegmentLabel) for item in segmentation.SegmentSequence}
    if choice is None:
        return sorted(segments)
    chosen = [number for number, label in segments.items() if label == choice or str(number) == choice.strip()]
    if not chosen:
        listed = ", ".join(f"{number} {label!r}" for number, label in sorted(segments.items()))
        raise CaseError(f"has no segment {choice!r} (segments: {listed}); write {file.name}#<number or label>",
                        path=str(file))
    return chosen


def _structure_set_lesion(file: Path, choice: str | None, headers: list, image: Path,
                          shape: tuple[int, int, int]) -> np.ndarray:
    if int(headers[0].get("NumberOfFrames", 1) or 1) > 1:
        raise CaseError(f"RTSTRUCT masks are read on single-frame images; image {image} is multi-frame",
                        path=str(file))
    structure_set = read_dicom(file)
    roi = _chosen_roi(structure_set, choice, file)
    _check_frame_of_reference(roi.get("ReferencedFrameOfReferenceUID"), headers, file, image)
    contours = next((item.get("ContourSequence", []) for item in structure_set.ROIContourSequence
                     if item.ReferencedROINumber == roi.ROINumber), [])
    referenced = {str(ref.ReferencedSOPInstanceUID) for contour in contours
                  for ref in contour.get("ContourImageSequence", [])}
    _refuse_unknown_references(referenced, headers, file, image)
    slice_of = {str(ds.SOPInstanceUID): index for index, ds in enumerate(headers)}
    polygons: dict[int, list[np.ndarray]] = {}
    for contour in contours:
        if contour.get("ContourGeometricType", "CLOSED_PLANAR") != "CLOSED_PLANAR":
            continue
        points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
        references = contour.get("ContourImageSequence", [])
        index = (slice_of[str(references[0].ReferencedSOPInstanceUID)] if references
                 else _slice_at(points[0], headers, file, image))
        polygons.setdefault(index, []).append(_pixel_vertices(points, headers[index]))
    lesion = np.zeros(shape, dtype=bool)
    for index, slice_polygons in polygons.items():
        lesion[index] = _fill_even_odd(slice_polygons, shape[1:])
    return lesion


def _chosen_roi(structure_set, choice: str | None, file: Path):
    rois = list(structure_set.StructureSetROISequence)
    names = ", ".join(repr(str(roi.ROIName)) for roi in rois)
    if choice is None and len(rois) == 1:
        return rois[0]
    if choice is None:
        raise CaseError(f"holds {len(rois)} ROIs ({names}): name one as {file.name}#<ROI name>", path=str(file))
    for roi in rois:
        if str(roi.ROIName) == choice:
            return roi
    raise CaseError(f"has no ROI named {choice!r} (ROIs: {names or 'none'})", path=str(file))


def _slice_at(point: np.ndarray, headers: list, file: Path, image: Path) -> int:
    """The slice a contour without image references lies on, by its position along the slice normal."""
    orientation = np.asarray(headers[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.array([slice_position(ds) for ds in headers])
    index = int(np.argmin(np.abs(positions - point @ normal)))
    tolerance = np.median(np.diff(positions)) / 2 if len(positions) > 1 else 1e-3 + 1e-3 * abs(positions[0])
    if abs(positions[index] - point @ normal) > max(tolerance, 1e-3):
        raise CaseError(f"has a contour at {tuple(np.round(point, 2))} mm, on no slice of image {image}",
                        path=str(file))
    return index


def _pixel_vertices(points: np.ndarray, header) -> np.ndarray:
    """Patient-space contour points (mm) as (column, row) pixel indices of the slice ``header``."""
    orientation = np.asarray(header.ImageOrientationPatient, dtype=float)
    row_spacing, column_spacing = (float(v) for v in header.PixelSpacing)
    offsets = points - np.asarray(header.ImagePositionPatient, dtype=float)
    columns, rows = offsets @ orientation[:3] / column_spacing, offsets @ orientation[3:] / row_spacing
    return np.rint(np.stack([columns, rows], axis=1)).astype(int)


def _fill_even_odd(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Pixels inside an odd number of polygons, or on any polygon's outline."""
    from PIL import Image, ImageDraw

    parity = np.zeros(shape, dtype=bool)
    outline = Image.new("1", shape[::-1])
    for vertices in polygons:
        points = [tuple(map(int, vertex)) for vertex in vertices]
        filled = Image.new("1", shape[::-1])
        ImageDraw.Draw(filled).polygon(points, fill=1, outline=1)
        parity ^= np.asarray(filled)
        ImageDraw.Draw(outline).polygon(points, outline=1)
    return parity | np.asarray(outline)
