"""DICOM datasets for reader tests."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def dicom_dataset(pixels: np.ndarray, **tags) -> Dataset:
    """An uncompressed single-frame MG dataset holding ``pixels``; ``tags`` set further attributes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    bits = 8 if pixels.dtype == np.uint8 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    ds.PixelSpacing = [0.5, 0.25]
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.tobytes()
    return ds


def dicom_series(folder, volume: np.ndarray, spacing=(2.5, 0.5, 0.25), origin=(-20.0, 30.0, 7.0),
                 **tags) -> list[Dataset]:
    """Write ``volume`` (z, y, x) as one file per axial slice, with the patient/study attributes DICOM SEG
    and RTSTRUCT writers need; ``spacing`` is (z, row, column) in mm, ``origin`` the first slice's
    ImagePositionPatient (x, y, z). Files and InstanceNumbers run in reverse slice order, so readers must
    sort by position. Returns the datasets in slice order."""
    folder.mkdir(parents=True, exist_ok=True)
    shared = {"StudyInstanceUID": generate_uid(), "SeriesInstanceUID": generate_uid(),
              "FrameOfReferenceUID": generate_uid(), "PatientID": "P1", "PatientName": "Test^Patient",
              "PatientBirthDate": "", "PatientSex": "F", "StudyDate": "20260101", "StudyTime": "120000",
              "AccessionNumber": "", "ReferringPhysicianName": "", "StudyID": "1", "SeriesNumber": 1,
              "Modality": "MR", "ImageOrientationPatient": [1, 0, 0, 0, 1, 0], "SliceThickness": spacing[0],
              "PixelSpacing": list(spacing[1:])} | tags
    datasets = []
    for z, pixels in enumerate(volume):
        position = [origin[0], origin[1], origin[2] + spacing[0] * z]
        ds = dicom_dataset(pixels, ImagePositionPatient=position, InstanceNumber=len(volume) - z, **shared)
        ds.save_as(folder / f"{len(volume) - z:03d}.dcm", enforce_file_format=True)
        datasets.append(ds)
    return datasets
