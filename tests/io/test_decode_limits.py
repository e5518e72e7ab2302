"""Decompression bombs are refused from their headers, before any pixel is decoded.

The bombs are tiny files declaring huge images (as uploaded to a server: a constant-colour PNG, a
NIfTI.gz of zeros, an RLE DICOM with a tiny payload), built in tmp_path. Each is read in a child
process whose address space is capped well below what decoding would need, so a reader that
decoded first would fail with a MemoryError instead of our message.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tracemalloc
import warnings
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless

from mmdlr.errors import CaseError
from mmdlr.io.limits import CLI_MAX_DECODED_MB, ENVIRONMENT_KEY, SERVE_MAX_DECODED_MB, set_max_decoded_mb
from mmdlr.io.readers import GREY_BLOCK_PIXELS, LUMINANCE_WEIGHTS, read_image, read_mask, to_grey

from .dicom_cases import dicom_dataset

MB = 2**20


def deflate_repeated(prefix: bytes, block: bytes, count: int) -> bytes:
    """Raw deflate of ``prefix + block * count``, compressing ``block`` once.

    A full flush resets the compressor's history, so every later copy of the block compresses to
    the same bytes: the stream is built by repetition instead of compressing gigabytes.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(prefix) + compressor.flush(zlib.Z_FULL_FLUSH)
    piece = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    return head + piece * count + b"\x03\x00"  # an empty final block ends the stream


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def constant_png(path: Path, width: int, height: int, rows_per_block: int = 100) -> Path:
    """An RGB PNG of one colour; ``height`` must be a multiple of ``rows_per_block``."""
    rows = (b"\x00" + bytes((200, 30, 30)) * width) * rows_per_block  # filter byte 0 + pixels
    count = height // rows_per_block
    checksum = 1
    for _ in range(count):
        checksum = zlib.adler32(rows, checksum)
    stream = b"\x78\xda" + deflate_repeated(b"", rows, count) + struct.pack(">I", checksum)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", stream)
                     + png_chunk(b"IEND", b""))
    return path


def zeros_nifti_gz(path: Path, shape: tuple[int, int, int], dtype=np.uint8) -> Path:
    """A gzip-compressed NIfTI-1 of zeros with ``shape`` in (x, y, z) order."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header["vox_offset"] = 352
    prefix = header.binaryblock + b"\0" * 4  # no extensions
    plane = bytes(shape[0] * shape[1] * np.dtype(dtype).itemsize)
    crc = zlib.crc32(prefix)
    for _ in range(shape[2]):
        crc = zlib.crc32(plane, crc)
    size = len(prefix) + len(plane) * shape[2]
    path.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
                     + deflate_repeated(prefix, plane, shape[2]) + struct.pack("<II", crc, size % 2**32))
    return path


def rle_dicom(path: Path, rows: int, columns: int) -> Path:
    """A 16-bit RLE Lossless DICOM declaring rows x columns, with a payload of a few bytes."""
    ds = dicom_dataset(np.zeros((2, 2), np.uint16))
    ds.Rows, ds.Columns = rows, columns
    ds.file_meta.TransferSyntaxUID = RLELossless
    segment = b"\x81\x00"  # PackBits: 128 zero bytes
    rle_header = struct.pack("<16I", 2, 64, 64 + len(segment), *[0] * 13)
    ds.PixelData = encapsulate([rle_header + segment * 2])
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path, enforce_file_format=True)
    return path


# Runs in a child: import the reader, warm it up on a tiny file of the same format (so its libraries
# are loaded), cap the address space a little above what the process then maps, and read each file.
CHILD = """
import json, resource, sys
from mmdlr.errors import CaseError
from mmdlr.io import readers
from mmdlr.io.limits import set_max_decoded_mb

warm_up, headroom_mb, jobs = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
readers.read_image(warm_up)
mapped_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize:"))
cap = mapped_kb * 1024 + int(headroom_mb * 2**20)
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
results = []
for path, limit_mb in jobs:
    set_max_decoded_mb(limit_mb)
    try:
        results.append({"shape": list(readers.read_image(path).array.shape)})
    except CaseError as error:
        results.append({"error": str(error)})
print(json.dumps(results))
"""
HEADROOM_MB = 128  # well below every bomb's decoded size (483 MB and more), ample for a header


def read_in_capped_child(warm_up: Path, jobs: list[tuple[Path, float]]) -> list[dict]:
    """Read each (path, limit in MB) in a child whose address space is capped near its size at rest."""
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, str(warm_up), str(HEADROOM_MB),
         json.dumps([(str(path), limit) for path, limit in jobs])],
        capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.splitlines()[-1])


def png_files(folder: Path) -> dict[str, Path]:
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / "tiny.png")
    pixels = np.random.default_rng(0).integers(0, 256, (2731, 1024, 3), dtype=np.uint8)
    Image.fromarray(pixels[:2730]).save(folder / "under.png")  # 2730 * 1024 * 3 bytes < 8 MB
    Image.fromarray(pixels).save(folder / "over.png")  # one row more
    return {"tiny": folder / "tiny.png", "bomb": constant_png(folder / "bomb.png", 13000, 13000),
            "under": folder / "under.png", "over": folder / "over.png"}


def nifti_files(folder: Path) -> dict[str, Path]:
    return {"tiny": zeros_nifti_gz(folder / "tiny.nii.gz", (4, 4, 2)),
            "bomb": zeros_nifti_gz(folder / "bomb.nii.gz", (1024, 1024, 512)),
            "under": zeros_nifti_gz(folder / "under.nii.gz", (256, 256, 128)),  # exactly 8 MB
            "over": zeros_nifti_gz(folder / "over.nii.gz", (256, 256, 129))}


def dicom_files(folder: Path) -> dict[str, Path]:
    files = {"bomb": rle_dicom(folder / "bomb.dcm", 65535, 65535)}
    for name, rows in (("tiny", 4), ("under", 2048), ("over", 2049)):  # 2048 x 2048 x 16 bit = 8 MB
        ds = dicom_dataset(np.arange(rows * 2048, dtype=np.uint16).reshape(rows, 2048) if rows > 4
                           else np.ones((4, 4), np.uint16))
        ds.compress(RLELossless)
        ds.save_as(folder / f"{name}.dcm", enforce_file_format=True)
        files[name] = folder / f"{name}.dcm"
    return files


BOMBS = {
    "png": (png_files, "declares 13000×13000 RGB (483.5 MB decoded)", (2730, 1024), "1024×2731 RGB"),
    "nifti": (nifti_files, "declares 1024×1024×512 8-bit unsigned integer (512.0 MB decoded)",
              (128, 256, 256), "256×256×129 8-bit unsigned integer"),
    "dicom": (dicom_files, "declares 65535×65535 MONOCHROME2 16-bit (8,191.8 MB decoded)", (2048, 2048),
              "2048×2049 MONOCHROME2 16-bit"),
}


@pytest.mark.parametrize("kind", BOMBS)
def test_bombs_refused_before_decoding_and_images_at_the_limit_load(tmp_path, kind):
    make_files, bomb_message, under_shape, over_declared = BOMBS[kind]
    files = make_files(tmp_path)
    assert files["bomb"].stat().st_size < 600_000
    bomb, under, over = read_in_capped_child(
        files["tiny"], [(files["bomb"], SERVE_MAX_DECODED_MB), (files["under"], 8), (files["over"], 8)])
    assert bomb["error"] == (f"file {files['bomb']}: {bomb_message}, above the limit of 256 MB "
                             "(io.max_decoded_mb)")
    assert under == {"shape": list(under_shape)}
    assert over_declared in over["error"] and "above the limit of 8 MB" in over["error"]


@pytest.fixture
def limit_mb(monkeypatch):
    """Set io.max_decoded_mb for one test (restored afterwards)."""
    monkeypatch.setenv(ENVIRONMENT_KEY, str(CLI_MAX_DECODED_MB))  # registers the variable for restoring
    return set_max_decoded_mb


def test_our_limit_replaces_pillows_pixel_limit(tmp_path, monkeypatch, limit_mb):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow would warn at 100 and raise at 200 pixels
    Image.fromarray(np.full((30, 20), 7, np.uint8)).save(tmp_path / "grey.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(tmp_path / "grey.png").array.shape == (30, 20)
    limit_mb(500 / MB)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(CaseError, match=r"declares 20×30 L \(0.0 MB decoded\), above the limit of"):
        read_image(tmp_path / "grey.png")


def test_series_total_and_mask_files_are_limited(tmp_path, limit_mb):
    folder = tmp_path / "series"
    folder.mkdir()
    for z in range(3):
        dicom_dataset(np.zeros((16, 12), np.uint16), InstanceNumber=z).save_as(
            folder / f"{z}.dcm", enforce_file_format=True)
    limit_mb(16 * 12 * 2 * 3 / MB)
    assert read_image(folder).array.shape == (3, 16, 12)
    limit_mb(16 * 12 * 2 * 3 / MB - 1e-6)
    with pytest.raises(CaseError, match="declares 3 files of 12×16 MONOCHROME2 16-bit") as error:
        read_image(folder)
    assert error.value.path == str(folder)

    nib.save(nib.Nifti1Image(np.ones((12, 16, 3), np.float32), np.eye(4)), tmp_path / "mask.nii.gz")
    with pytest.raises(CaseError, match="12×16×3 32-bit float"):
        read_mask(tmp_path / "mask.nii.gz")


def test_to_grey_equals_float64_luminance_without_full_size_copies():
    rng = np.random.default_rng(1)
    for channels in (3, 4):
        colour = rng.integers(0, 256, (1200, 1000, channels), dtype=np.uint8)  # several blocks
        expected = (colour[..., :3].astype(np.float64) @ LUMINANCE_WEIGHTS).astype(np.float32)
        tracemalloc.start()
        grey = to_grey(colour)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert grey.dtype == np.float32
        np.testing.assert_allclose(grey, expected, rtol=np.finfo(np.float32).eps, atol=0)
        # the float32 result plus one block's float64 scratch; a float64 copy of the image is 29 MB
        assert peak < grey.nbytes + GREY_BLOCK_PIXELS * (channels + 1) * 8 + 2**16
