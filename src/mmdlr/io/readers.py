"""Read medical and plain images into grey arrays with their geometry.

Supported: DICOM (single file, multi-frame, or a series folder sorted by slice position; compressed
transfer syntaxes through pylibjpeg), NIfTI, NRRD/MHA (SimpleITK), PNG/JPEG/BMP/TIFF (Pillow).
Arrays are in numpy axis order: (y, x) or (z, y, x); spacing, origin and direction follow that order.
Colour images become grey by ITU-R BT.601 luminance.

Every reader reads the header first and refuses a file whose decoded pixel data would exceed
``io.max_decoded_mb`` (``mmdlr.io.limits``) before decoding anything: a small upload cannot make the
process allocate gigabytes. Conversions hold about the decoded pixels plus the float32 result (no float64
copies).
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmdlr.errors import CaseError
from mmdlr.io.limits import max_decoded_bytes, max_decoded_mb

LUMINANCE_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float64)
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ITK_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
GREY_BLOCK_PIXELS = 1 << 18  # colour converted this many pixels at a time: ~8 MB of float64 scratch
PIL_TO_RGB_MODES = ("P", "LA", "PA", "CMYK", "YCbCr", "HSV")
# Header formats whose pixel data may live in another file the header names (MetaImage, NRRD)
DETACHED_DATA_KEY = re.compile(r"^\s*(?:ElementDataFile\s*=|data\s?file\s*:)\s*(.*)$", re.IGNORECASE | re.MULTILINE)
DETACHED_HEADER_BYTES = 1 << 16
J2K_SIZ = b"\xff\x4f\xff\x51"  # start of codestream, then the image and tile size marker
INFLATE_CHUNK = 1 << 20


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
    """Collapse a trailing RGB/RGBA channel axis by luminance into float32; grey input is cast to float32.

    Colour goes through float64 one block of pixels at a time, so the only full-size array made is the
    float32 result.
    """
    if array.ndim < 3 or array.shape[-1] not in (3, 4):
        return np.asarray(array, dtype=np.float32)
    grey = np.empty(array.shape[:-1], dtype=np.float32)
    pixels, flat = array.reshape(-1, array.shape[-1]), grey.reshape(-1)
    for start in range(0, flat.size, GREY_BLOCK_PIXELS):
        block = slice(start, start + GREY_BLOCK_PIXELS)
        flat[block] = pixels[block, :3].astype(np.float64) @ LUMINANCE_WEIGHTS
    return grey


def refuse_above_limit(path: str | os.PathLike, declared: str, decoded_bytes: int) -> None:
    """Raise CaseError when a header declares more decoded pixel data than ``io.max_decoded_mb``."""
    if decoded_bytes > max_decoded_bytes():
        raise CaseError(f"declares {declared} ({decoded_bytes / 2**20:,.1f} MB decoded), above the limit of "
                        f"{max_decoded_mb():g} MB (io.max_decoded_mb)", path=str(path))


def squeeze_single_slice(data: ImageData) -> ImageData:
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
    return squeeze_single_slice(data)


def _read_raster(path: Path) -> ImageData:
    """Decode with Pillow, then convert to grey a band of rows at a time (no full-size colour copy)."""
    from PIL import Image, ImageMode

    Image.MAX_IMAGE_PIXELS = None  # io.max_decoded_mb, checked below from the header, replaces Pillow's limit
    with Image.open(path) as image:
        mode = ImageMode.getmode(image.mode)
        pixel_bytes = len(mode.bands) * np.dtype(mode.typestr).itemsize
        refuse_above_limit(path, f"{image.width}×{image.height} {image.mode}",
                           image.width * image.height * pixel_bytes)
        image.load()
        grey = np.empty((image.height, image.width), dtype=np.float32)
        rows = max(1, GREY_BLOCK_PIXELS // max(1, image.width))
        for top in range(0, image.height, rows):
            band = image.crop((0, top, image.width, min(top + rows, image.height)))
            if band.mode in PIL_TO_RGB_MODES:
                band = band.convert("RGBA" if "A" in band.mode else "RGB")
            grey[top:top + rows] = to_grey(np.asarray(band))
    return ImageData(array=grey, spacing=(1.0, 1.0), path=str(path))


def refuse_data_outside_folder(path: Path) -> None:
    """Raise CaseError when a MetaImage or NRRD header takes its pixels from a file outside its own folder
    (``ElementDataFile = /etc/...``, ``data file: ../...``, or a LIST of files): reading it would read
    whatever file the header's author chose."""
    if not path.name.lower().endswith((".mha", ".mhd", ".nrrd", ".nhdr")):
        return
    with open(path, "rb") as handle:
        header = handle.read(DETACHED_HEADER_BYTES).decode("latin-1")
    for match in DETACHED_DATA_KEY.finditer(header):
        target = (match.group(1).split() or [""])[0]
        if target.upper() == "LIST" or Path(target).is_absolute() or ".." in Path(target).parts:
            raise CaseError(f"header takes its pixel data from {match.group(1).strip()!r}, outside its own folder; "
                            "keep the data in the header's file or beside it (a plain file name)", path=str(path))


def _read_itk(path: Path) -> ImageData:
    import SimpleITK as sitk

    refuse_data_outside_folder(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    components = reader.GetNumberOfComponents()
    component_bytes = sitk.GetArrayViewFromImage(sitk.Image([1] * reader.GetDimension(),
                                                            reader.GetPixelID())).itemsize
    pixel_type = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    refuse_above_limit(path, "×".join(map(str, reader.GetSize())) + f" {pixel_type}",
                       int(np.prod(reader.GetSize())) * components * component_bytes)
    image = reader.Execute()
    view = sitk.GetArrayViewFromImage(image)  # valid while `image` lives: converted into a new array
    array = to_grey(view) if components in (3, 4) else np.array(view, dtype=np.float32)
    ndim = image.GetDimension()
    direction = np.asarray(image.GetDirection()).reshape(ndim, ndim)[::-1, ::-1]
    return ImageData(
        array=array,
        spacing=tuple(float(v) for v in image.GetSpacing()[::-1]),
        origin=tuple(float(v) for v in image.GetOrigin()[::-1]),
        direction=tuple(float(v) for v in direction.ravel()),
        path=str(path),
        has_geometry=True,
    )


def read_dicom(path: str | os.PathLike, **options):
    """``pydicom.dcmread`` of a file, refused first when it is a deflated dataset that inflates to more
    than ``io.max_decoded_mb`` (pydicom inflates the whole file in memory before reading any element)."""
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    meta = pydicom.filereader.read_file_meta_info(path)
    if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        inflated, inflater = 0, zlib.decompressobj(-zlib.MAX_WBITS)
        with open(path, "rb") as handle:
            handle.seek(132 + 12 + int(meta.FileMetaInformationGroupLength))
            while (chunk := inflater.unconsumed_tail or handle.read(INFLATE_CHUNK)) and not inflater.eof:
                inflated += len(inflater.decompress(chunk, INFLATE_CHUNK))
                if inflated > max_decoded_bytes():
                    refuse_above_limit(path, "a deflated dataset", inflated)
    return pydicom.dcmread(str(path), **options)


def _read_dicom_header(path: Path):
    """The dataset without its pixel data; refused when it declares too much decoded data."""
    dataset = read_dicom(path, stop_before_pixels=True)
    refuse_above_limit(path, *_dicom_declared_size(dataset))
    return dataset


def _frame_size(frame: bytes) -> tuple[int, int, int] | None:
    """(columns, rows, components) a JPEG, JPEG-LS or JPEG 2000 frame declares in its own header."""
    from pydicom.pixels.utils import _get_jpg_parameters

    jpeg = _get_jpg_parameters(frame)
    if jpeg:
        return jpeg["width"], jpeg["height"], jpeg["components"]
    start = frame.find(J2K_SIZ, 0, DETACHED_HEADER_BYTES)
    if start < 0 or len(frame) < start + 42:
        return None
    width, height, left, top = struct.unpack(">4I", frame[start + 8:start + 24])
    return width - left, height - top, struct.unpack(">H", frame[start + 40:start + 42])[0]


def refuse_lying_frames(path: Path, dataset) -> None:
    """Raise CaseError when a compressed frame declares another size than the header's Columns×Rows (a
    decoder allocates what the frame declares: a 1 kB JPEG 2000 frame can declare 40000×40000)."""
    from pydicom.encaps import generate_frames
    from pydicom.uid import RLELossless

    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_encapsulated or syntax == RLELossless:
        return
    header = (int(dataset.get("Columns", 0) or 0), int(dataset.get("Rows", 0) or 0),
              int(dataset.get("SamplesPerPixel", 1) or 1))
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    pixel_data = read_dicom(path, specific_tags=["PixelData"]).get("PixelData") or b""
    for index, frame in enumerate(generate_frames(pixel_data, number_of_frames=frames), start=1):
        declared = _frame_size(frame)
        if declared != header:
            raise CaseError(f"compressed frame {index} declares "
                            f"{'×'.join(map(str, declared)) if declared else 'no size it can be checked by'}, "
                            f"the header {'×'.join(map(str, header))} (columns×rows×samples); the file is corrupt "
                            "or hostile: re-export it", path=str(path))


def _dicom_declared_size(dataset) -> tuple[str, int]:
    """What the header declares (columns×rows[×frames] photometric bits) and its decoded bytes."""
    rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    bits = int(dataset.get("BitsAllocated", 8) or 8)
    shape = f"{columns}×{rows}" + (f"×{frames} frames" if frames > 1 else "")
    photometric = dataset.get("PhotometricInterpretation", "MONOCHROME2")
    return f"{shape} {photometric} {bits}-bit", rows * columns * frames * samples * -(-bits // 8)


def _dicom_pixels(path: Path, dataset) -> np.ndarray:
    """Decode a file's pixels as rescaled grey float32 (MONOCHROME1 inverted so bright = dense).

    Colour (YBR is decoded to RGB by pydicom) becomes luminance. The rescale runs in float32 in place.
    """
    from pydicom.pixels import apply_modality_lut, pixel_array

    refuse_lying_frames(path, dataset)
    pixels = pixel_array(str(path))
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric.startswith(("RGB", "YBR")):
        return to_grey(pixels)
    if "ModalityLUTSequence" in dataset:
        grey = apply_modality_lut(pixels, dataset).astype(np.float32)
    else:  # the rescale of apply_modality_lut, without its float64 copy
        grey = pixels.astype(np.float32)
        if "RescaleSlope" in dataset and "RescaleIntercept" in dataset:
            grey *= np.float32(dataset.RescaleSlope)
            grey += np.float32(dataset.RescaleIntercept)
    if photometric == "MONOCHROME1":
        np.subtract(grey.max() + grey.min(), grey, out=grey)
    return grey


def _pixel_spacing(dataset) -> tuple[float, float]:
    spacing = dataset.get("PixelSpacing") or dataset.get("ImagerPixelSpacing")
    return (float(spacing[0]), float(spacing[1])) if spacing else (1.0, 1.0)


def _read_dicom_file(path: Path) -> ImageData:
    dataset = _read_dicom_header(path)
    return dicom_image_data(path, [dataset], _dicom_pixels(path, dataset))


def dicom_headers(path: str | os.PathLike) -> list:
    """The headers of a DICOM file, or of a series folder in the slice order ``read_image`` gives; refused
    when they declare more decoded pixel data than ``io.max_decoded_mb``."""
    path = Path(path)
    return _series_headers(path)[1] if path.is_dir() else [_read_dicom_header(path)]


def dicom_image_data(path: str | os.PathLike, datasets: list, array: np.ndarray) -> ImageData:
    """``array`` with the geometry ``read_image`` gives the DICOM file or series folder ``path`` whose
    headers (in slice order) are ``datasets``."""
    first = datasets[0]
    row_col = _pixel_spacing(first)
    if Path(path).is_dir():
        steps = np.diff([slice_position(ds) for ds in datasets])
        z_spacing = float(np.median(steps)) if len(steps) and np.median(steps) > 0 else float(
            first.get("SliceThickness") or 1.0)
        origin = tuple(float(v) for v in first.get("ImagePositionPatient", (0.0, 0.0, 0.0)))[::-1]
        return ImageData(array=array, spacing=(z_spacing, *row_col), origin=origin, path=str(path),
                         has_geometry=True, tags=_summary_tags(first))
    if int(first.get("NumberOfFrames", 1) or 1) > 1:
        thickness = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)
        spacing: tuple[float, ...] = (thickness, *row_col)
    else:
        spacing = row_col
    return ImageData(array=array, spacing=spacing, path=str(path),
                     has_geometry="PixelSpacing" in first or "ImagerPixelSpacing" in first,
                     tags=_summary_tags(first))


def _summary_tags(dataset) -> dict:
    tags = {key: str(dataset[key].value) for key in ("Modality", "ViewPosition") if key in dataset}
    file_meta = getattr(dataset, "file_meta", None)
    if file_meta is not None and "TransferSyntaxUID" in file_meta:
        tags["TransferSyntaxUID"] = str(file_meta.TransferSyntaxUID)
    return tags


def _read_dicom_series(folder: Path) -> ImageData:
    """Read every DICOM file of a folder as one volume, sorted along the slice normal.

    All headers are read (and the series' total decoded size checked) before any slice is decoded;
    slices are decoded one at a time into the volume.
    """
    files, datasets = _series_headers(folder)
    volume = None
    for index, (file, dataset) in enumerate(zip(files, datasets)):
        pixels = _dicom_pixels(file, dataset)
        if volume is None:
            volume = np.empty((len(files), *pixels.shape), dtype=np.float32)
        elif pixels.shape != volume.shape[1:]:
            raise CaseError("DICOM series slices differ in size", path=str(folder))
        volume[index] = pixels
    return dicom_image_data(folder, datasets, volume)


def _series_headers(folder: Path) -> tuple[list[Path], list]:
    """The files of a series folder and their headers, sorted along the slice normal; total size checked."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise CaseError("DICOM series folder is empty", path=str(folder))
    datasets = []
    for file in files:
        try:
            datasets.append(read_dicom(file, stop_before_pixels=True))
        except CaseError:
            raise
        except Exception as error:
            raise CaseError(f"cannot read DICOM slice ({error})", path=str(file)) from error
    declared = [_dicom_declared_size(ds) for ds in datasets]
    kinds = {kind for kind, _ in declared}
    refuse_above_limit(folder, f"{len(files)} files of " + (kinds.pop() if len(kinds) == 1 else "different sizes"),
                       sum(size for _, size in declared))
    order = np.argsort([slice_position(ds) for ds in datasets], kind="stable")
    return [files[i] for i in order], [datasets[i] for i in order]


def slice_position(dataset) -> float:
    """Position along the slice normal (ImagePositionPatient · normal), else InstanceNumber."""
    position = dataset.get("ImagePositionPatient")
    orientation = dataset.get("ImageOrientationPatient")
    if position is not None and orientation is not None:
        row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
        return float(np.dot(np.asarray(position, float), np.cross(row, col)))
    return float(dataset.get("InstanceNumber", 0))


def read_mask(paths: list[str | os.PathLike] | str | os.PathLike, label_value: int | None = None,
              threshold: float | None = None, image: str | os.PathLike | None = None) -> ImageData:
    """Read one or several mask files and return their union as a uint8 0/1 mask.

    A voxel is lesion where the mask is non-zero, or equals ``label_value``, or is at least
    ``threshold`` (masks with grey edges, e.g. saved as JPEG), whichever is given. DICOM SEG and RTSTRUCT
    masks (``mmdlr.io.dicom_masks``) are rasterised onto ``image``, the DICOM image they belong to; their
    segment or ROI is chosen by ``#`` in the path, not by ``label_value``/``threshold``.
    """
    from mmdlr.io.dicom_masks import dicom_mask_kind, read_dicom_mask

    if label_value is not None and threshold is not None:
        raise ValueError("give a mask label value or a mask threshold, not both")
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise CaseError("no mask file given")
    union: ImageData | None = None
    for path in paths:
        if dicom_mask_kind(path):
            part = read_dicom_mask(path, image)
            lesion = part.array.astype(bool)
        else:
            part = read_image(path)
            if threshold is not None:
                lesion = part.array >= threshold
            else:
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
