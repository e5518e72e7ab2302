"""Read medical and plain images into grey arrays with their geometry.

Supported: DICOM (single file, multi-frame, or a series folder sorted by slice position; compressed
transfer syntaxes through pylibjpeg), NIfTI, NRRD/MHA (SimpleITK), PNG/JPEG/BMP/TIFF (Pillow).
Arrays are in numpy axis order: (y, x) or (z, y, x); spacing, origin and direction follow that order.
Colour images become grey by ITU-R BT.601 luminance.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmdlr.errors import CaseError

LUMINANCE_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float64)
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ITK_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


@dataclass
class ImageData:
    """A grey image and, where the format records it, its physical geometry."""

    array: np.ndarray
    spacing: tuple[float, ...]
    origin: tuple[float, ...] = ()
    direction: tuple[float, ...] = ()
    path: str = ""
    has_geometry: bool = False
    tags: dict = field(default_factory=dict)

    @property
    def ndim(self) -> int:
        return self.array.ndim


def to_grey(array: np.ndarray) -> np.ndarray:
    """Collapse a trailing RGB/RGBA channel axis by luminance; grey input is returned as float32."""
    if array.ndim >= 3 and array.shape[-1] in (3, 4):
        array = array[..., :3].astype(np.float64) @ LUMINANCE_WEIGHTS
    return np.asarray(array, dtype=np.float32)


def _squeeze_single_slice(data: ImageData) -> ImageData:
    """Treat a (1, y, x) volume (common in ITK-SNAP exports of 2D images) as a 2D image."""
    if data.array.ndim == 3 and data.array.shape[0] == 1:
        data.array = data.array[0]
        data.spacing = data.spacing[1:]
        data.origin = data.origin[1:] if data.origin else ()
        data.direction = _direction_2d(data.direction)
    return data


def _direction_2d(direction: tuple[float, ...]) -> tuple[float, ...]:
    if len(direction) != 9:
        return direction
    matrix = np.asarray(direction).reshape(3, 3)[1:, 1:]
    return tuple(float(v) for v in matrix.ravel())


def image_kind(path: str | os.PathLike) -> str:
    """Return 'dicom_series', 'dicom', 'itk' or 'raster' for a path, or raise for an unknown one."""
    path = Path(path)
    name = path.name.lower()
    if path.is_dir():
        return "dicom_series"
    if name.endswith(ITK_SUFFIXES):
        return "itk"
    if name.endswith(RASTER_SUFFIXES):
        return "raster"
    if name.endswith(DICOM_SUFFIXES) or _has_dicom_preamble(path):
        return "dicom"
    raise CaseError(f"unsupported image format (suffix {path.suffix or 'none'})", path=str(path))


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def read_image(path: str | os.PathLike) -> ImageData:
    """Read any supported image as a grey float32 array with geometry; raise CaseError naming the file."""
    path = Path(path)
    if not path.exists():
        raise CaseError("file not found", path=str(path))
    kind = image_kind(path)
    reader = {"dicom_series": _read_dicom_series, "dicom": _read_dicom_file,
              "itk": _read_itk, "raster": _read_raster}[kind]
    try:
        data = reader(path)
    except CaseError:
        raise
    except Exception as error:  # any decoder failure is a corrupt or unreadable file
        raise CaseError(f"cannot read {kind} image ({type(error).__name__}: {error})", path=str(path)) from error
    if data.array.size == 0:
        raise CaseError("image has no pixels", path=str(path))
    return _squeeze_single_slice(data)


def _read_raster(path: Path) -> ImageData:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        if image.mode in ("P", "LA", "PA", "CMYK", "YCbCr", "HSV"):
            image = image.convert("RGBA" if "A" in image.mode else "RGB")
        array = np.asarray(image)
    return ImageData(array=to_grey(array), spacing=(1.0, 1.0), path=str(path))


def _read_itk(path: Path) -> ImageData:
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        array = to_grey(array)
    ndim = image.GetDimension()
    direction = np.asarray(image.GetDirection()).reshape(ndim, ndim)[::-1, ::-1]
    return ImageData(
        array=np.asarray(array, dtype=np.float32),
        spacing=tuple(float(v) for v in image.GetSpacing()[::-1]),
        origin=tuple(float(v) for v in image.GetOrigin()[::-1]),
        direction=tuple(float(v) for v in direction.ravel()),
        path=str(path),
        has_geometry=True,
    )


def _dicom_pixels(dataset) -> np.ndarray:
    """Decoded, rescaled grey pixels of a dataset (MONOCHROME1 inverted so bright = dense)."""
    from pydicom.pixels import apply_modality_lut

    pixels = dataset.pixel_array
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric.startswith(("RGB", "YBR")):
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            pixels = convert_color_space(pixels, photometric, "RGB")
        return to_grey(pixels)
    pixels = apply_modality_lut(pixels, dataset).astype(np.float32)
    if photometric == "MONOCHROME1":
        pixels = pixels.max() + pixels.min() - pixels
    return pixels


def _pixel_spacing(dataset) -> tuple[float, float]:
    spacing = dataset.get("PixelSpacing") or dataset.get("ImagerPixelSpacing")
    return (float(spacing[0]), float(spacing[1])) if spacing else (1.0, 1.0)


def _read_dicom_file(path: Path) -> ImageData:
    import pydicom

    dataset = pydicom.dcmread(str(path))
    pixels = _dicom_pixels(dataset)
    row_col = _pixel_spacing(dataset)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        thickness = float(dataset.get("SpacingBetweenSlices") or dataset.get("SliceThickness") or 1.0)
        spacing: tuple[float, ...] = (thickness, *row_col)
    else:
        spacing = row_col
    return ImageData(array=pixels, spacing=spacing, path=str(path),
                     has_geometry="PixelSpacing" in dataset or "ImagerPixelSpacing" in dataset,
                     tags=_summary_tags(dataset))


def _summary_tags(dataset) -> dict:
    tags = {key: str(dataset[key].value) for key in ("Modality", "ViewPosition") if key in dataset}
    file_meta = getattr(dataset, "file_meta", None)
    if file_meta is not None and "TransferSyntaxUID" in file_meta:
        tags["TransferSyntaxUID"] = str(file_meta.TransferSyntaxUID)
    return tags


def _read_dicom_series(folder: Path) -> ImageData:
    """Read every DICOM file of a folder as one volume, sorted along the slice normal."""
    import pydicom

    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise CaseError("DICOM series folder is empty", path=str(folder))
    datasets = []
    for file in files:
        try:
            datasets.append(pydicom.dcmread(str(file)))
        except Exception as error:
            raise CaseError(f"cannot read DICOM slice ({error})", path=str(file)) from error
    positions = [_slice_position(ds) for ds in datasets]
    order = np.argsort(positions, kind="stable")
    datasets = [datasets[i] for i in order]
    positions = [positions[i] for i in order]
    slices = [_dicom_pixels(ds) for ds in datasets]
    if len({s.shape for s in slices}) != 1:
        raise CaseError("DICOM series slices differ in size", path=str(folder))
    steps = np.diff(positions)
    z_spacing = float(np.median(steps)) if len(steps) and np.median(steps) > 0 else float(
        datasets[0].get("SliceThickness") or 1.0)
    first = datasets[0]
    origin = tuple(float(v) for v in first.get("ImagePositionPatient", (0.0, 0.0, 0.0)))[::-1]
    return ImageData(array=np.stack(slices).astype(np.float32), spacing=(z_spacing, *_pixel_spacing(first)),
                     origin=origin, path=str(folder), has_geometry=True, tags=_summary_tags(first))


def _slice_position(dataset) -> float:
    """Position along the slice normal (ImagePositionPatient · normal), else InstanceNumber."""
    position = dataset.get("ImagePositionPatient")
    orientation = dataset.get("ImageOrientationPatient")
    if position is not None and orientation is not None:
        row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
        return float(np.dot(np.asarray(position, float), np.cross(row, col)))
    return float(dataset.get("InstanceNumber", 0))


def read_mask(paths: list[str | os.PathLike] | str | os.PathLike, label_value: int | None = None) -> ImageData:
    """Read one or several mask files and return their union as a uint8 0/1 mask.

    A voxel is lesion where the mask is non-zero, or equals ``label_value`` when given.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise CaseError("no mask file given")
    union: ImageData | None = None
    for path in paths:
        part = read_image(path)
        lesion = part.array != 0 if label_value is None else part.array == label_value
        if union is None:
            union = part
            union.array = lesion.astype(np.uint8)
        elif part.array.shape != union.array.shape:
            raise CaseError(f"mask files differ in shape: {union.array.shape} in {union.path} "
                            f"vs {part.array.shape}", path=str(path))
        else:
            union.array |= lesion.astype(np.uint8)
    return union
