"""DICOM files whose pixels decode to more than their header declares are refused before decoding.

Found in the issue 11 review (serve's 256 MB limit, peak memory of the read in brackets): a 1.2 kB DICOM
file declaring 16×16 whose JPEG 2000 frame declares 12000×12000 (750 MB; the size grows with the
frame's declared size, not the file's), the same with a baseline JPEG frame, and a 400 kB deflated
DICOM (pydicom inflates the whole dataset before reading any element: 850 MB).
"""

from __future__ import annotations

import io

import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (DeflatedExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit,
                         SecondaryCaptureImageStorage, generate_uid)

from mmdlr.errors import CaseError
from mmdlr.io.limits import ENVIRONMENT_KEY, set_max_decoded_mb
from mmdlr.io.readers import read_image


@pytest.fixture(autouse=True)
def one_megabyte_limit(monkeypatch):
    monkeypatch.delenv(ENVIRONMENT_KEY, raising=False)
    set_max_decoded_mb(1)


def _write(path, syntax, pixel_data: bytes, side: int = 16, private: bytes = b""):
    meta = FileMetaDataset()
    meta.TransferSyntaxUID, meta.MediaStorageSOPClassUID = syntax, SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID, "US"
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if private:
        ds.add_new(0x00091010, "OB", private)
    ds.PixelData = pixel_data
    if syntax.is_encapsulated:
        ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def _frame(kind: str, side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (side, side), 0).save(buffer, kind, **({"no_jp2": True} if kind == "JPEG2000" else {}))
    return encapsulate([buffer.getvalue()])


@pytest.mark.parametrize("kind,syntax", [("JPEG2000", JPEG2000Lossless), ("JPEG", JPEGBaseline8Bit)])
def test_compressed_frame_larger_than_the_header_is_refused_naming_both_sizes(tmp_path, kind, syntax):
    path = _write(tmp_path / "lying.dcm", syntax, _frame(kind, 2000))
    with pytest.raises(CaseError, match="lying.dcm: compressed frame 1 declares 2000×2000×1, the header 16×16×1"):
        read_image(path)


@pytest.mark.parametrize("kind,syntax", [("JPEG2000", JPEG2000Lossless), ("JPEG", JPEGBaseline8Bit)])
def test_compressed_frame_of_the_header_size_is_read(tmp_path, kind, syntax):
    assert read_image(_write(tmp_path / "ok.dcm", syntax, _frame(kind, 16))).array.shape == (16, 16)


def test_deflated_dataset_inflating_above_the_limit_is_refused(tmp_path):
    path = _write(tmp_path / "deflated.dcm", DeflatedExplicitVRLittleEndian, bytes(256), private=bytes(4 * 2**20))
    assert path.stat().st_size < 64 * 2**10
    with pytest.raises(CaseError, match="deflated.dcm: declares a deflated dataset .* above the limit of 1 MB"):
        read_image(path)

