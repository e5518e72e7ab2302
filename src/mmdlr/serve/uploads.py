"""Uploaded case files: only the documented fields, copied into a private folder under server-chosen names.

Fields are ``<mod>_image`` and ``<mod>_mask`` for the run's modalities. A field given several times is a
DICOM series (image) or several masks to unite (mask). Of a client's file name only a known format
suffix is kept; no client path is ever opened. Errors name the field and the client's file name.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import UploadFile

from mmdlr.io.readers import DICOM_SUFFIXES, ITK_SUFFIXES, RASTER_SUFFIXES
from mmdlr.serve.predictor import CaseFiles

KINDS = ("image", "mask")
SUFFIXES = sorted({*ITK_SUFFIXES, *RASTER_SUFFIXES, *DICOM_SUFFIXES}, key=len, reverse=True)


class UploadError(ValueError):
    """A request whose files cannot be taken (unknown field, a text value for a file, half a pair)."""


def upload_fields(modalities: Iterable[str]) -> list[str]:
    return [f"{modality}_{kind}" for modality in modalities for kind in KINDS]


def format_suffix(filename: str | None) -> str:
    """The known image format suffix of a client's file name, or "" (DICOM is then recognised by content)."""
    name = (filename or "").lower()
    return next((suffix for suffix in SUFFIXES if name.endswith(suffix)), "")


@dataclass
class SavedUploads:
    """The saved files per modality, and the client-facing name of every saved path."""

    files: dict[str, CaseFiles]
    names: dict[str, str]

    def describe(self, message: str) -> str:
        """``message`` with every saved path replaced by its field and client file name."""
        for path in sorted(self.names, key=len, reverse=True):
            message = message.replace(path, self.names[path])
        return message


def save_uploads(items: Iterable[tuple[str, object]], modalities: list[str], folder: Path) -> SavedUploads:
    """Copy the uploaded files of ``items`` (form field, value) into ``folder``."""
    allowed = upload_fields(modalities)
    parts: dict[str, list[UploadFile]] = {}
    for field, value in items:
        if field not in allowed:
            raise UploadError(f"unknown file field {field!r}; this run accepts {', '.join(allowed)} (and params)")
        if not isinstance(value, UploadFile):
            raise UploadError(f"field {field!r} must be a file upload, not a text value")
        parts.setdefault(field, []).append(value)
    files, names = {}, {}
    for modality in modalities:
        image_field, mask_field = (f"{modality}_{kind}" for kind in KINDS)
        images, masks = parts.get(image_field, []), parts.get(mask_field, [])
        if bool(images) != bool(masks):
            given, absent = (image_field, mask_field) if images else (mask_field, image_field)
            raise UploadError(f"{given} was uploaded without {absent}: send both files of modality {modality}")
        if not images:
            continue
        if len(images) == 1:
            image = _save(images[0], folder / f"{image_field}{format_suffix(images[0].filename)}", image_field, names)
        else:
            image = folder / image_field
            image.mkdir()
            names[str(image)] = f"{image_field} (DICOM series of {len(images)} files)"
            for index, upload in enumerate(images):
                _save(upload, image / f"{index:05d}{format_suffix(upload.filename)}", image_field, names)
        mask_paths = tuple(_save(upload, folder / f"{mask_field}_{index}{format_suffix(upload.filename)}",
                                 mask_field, names) for index, upload in enumerate(masks))
        files[modality] = CaseFiles(image, mask_paths)
    return SavedUploads(files, names)


def _save(upload: UploadFile, path: Path, field: str, names: dict[str, str]) -> Path:
    upload.file.seek(0)
    with open(path, "wb") as handle:
        shutil.copyfileobj(upload.file, handle)
    names[str(path)] = f"{field} ({upload.filename or 'unnamed file'})"
    return path
