"""The fields of an inference request, checked from the parsed form, then copied into a private folder.

Fields are ``<mod>_image`` and ``<mod>_mask`` for the run's modalities and an optional text field
``params`` (one JSON object). MONAI Label's clients send ``file`` (image) and ``label`` (mask) instead: they
stand for the modality named by ``params.modality``, else the model's only modality. ``params.center`` is the
case's centre (a run trained with ComBat needs it). Other ``params`` keys (MONAI Label's ``client_id``, ...)
are ignored and reported. A file field given several
times is a DICOM series (image) or several masks to unite (mask). :func:`read_case_form` checks names,
kinds, counts, pairs and sizes without decoding anything, so a malformed request is answered before it
waits for a compute slot; :func:`save_uploads` then copies the files under server-chosen names. Of a
client's file name only a known format suffix is kept; no client path is ever opened. Errors name the
field and the client's file name.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import FormData, UploadFile

from mmdlr.io.readers import DICOM_SUFFIXES, ITK_SUFFIXES, RASTER_SUFFIXES
from mmdlr.serve.predictor import CaseFiles

KINDS = ("image", "mask")
SUFFIXES = sorted({*ITK_SUFFIXES, *RASTER_SUFFIXES, *DICOM_SUFFIXES}, key=len, reverse=True)
PARAMS_FIELD = "params"
PARAMS = ("modality", "center")
MONAI_LABEL_FIELDS = {"file": "image", "label": "mask"}  # MONAI Label's field -> our kind
MAX_FILES = 1000  # files of one request (a DICOM series is one file per slice)
MAX_MASK_FILES = 16  # mask files of one modality
MAX_TEXT_FIELDS = 4


class UploadError(ValueError):
    """A request whose fields cannot be taken (unknown field, a text value for a file, half a pair, ...)."""


def upload_fields(modalities: Iterable[str]) -> list[str]:
    return [f"{modality}_{kind}" for modality in modalities for kind in KINDS]


def format_suffix(filename: str | None) -> str:
    """The known image format suffix of a client's file name, or "" (DICOM is then recognised by content)."""
    name = (filename or "").lower()
    return next((suffix for suffix in SUFFIXES if name.endswith(suffix)), "")


def client_name(field: str, upload: UploadFile) -> str:
    return f"{field} ({upload.filename or 'unnamed file'})"


@dataclass
class CaseForm:
    """A checked request: the uploaded files per modality and kind, and the params object."""

    files: dict[str, dict[str, list[UploadFile]]]
    params: dict
    ignored_params: list[str]


def read_params(values: list) -> dict:
    """The optional ``params`` field: one JSON object (keys unchecked: see :func:`read_case_form`)."""
    if not values:
        return {}
    if len(values) > 1 or not isinstance(values[0], str):
        raise UploadError("params must be one text field holding a JSON object")
    try:
        params = json.loads(values[0])
    except json.JSONDecodeError as error:
        raise UploadError(f"params is not valid JSON ({error})") from error
    except RecursionError:
        raise UploadError("params is nested too deeply; it must be a flat JSON object, "
                          "e.g. {\"modality\": \"us\"}") from None
    if not isinstance(params, dict):
        raise UploadError("params must be a JSON object, e.g. {\"modality\": \"us\"}")
    return params


def check_modality_param(params: dict, modalities: list[str]) -> None:
    """``params.modality``, when given, must be one of the run's modalities."""
    if "modality" in params and params["modality"] not in modalities:
        raise UploadError(f"params modality {json.dumps(params['modality'])} is not a modality of this run; "
                          f"use one of {', '.join(modalities)}")


def monai_label_modality(field: str, params: dict, model_modalities: list[str]) -> str:
    """The modality a MONAI Label ``file``/``label`` field stands for: ``params.modality`` or the model's only one."""
    modality = params.get("modality") or (model_modalities[0] if len(model_modalities) == 1 else None)
    if modality is None:
        raise UploadError(f"field {field!r} needs params naming its modality, one of "
                          f"{' or '.join(json.dumps({'modality': m}) for m in model_modalities)}")
    return modality


def read_case_form(form: FormData, modalities: list[str], model_modalities: list[str]) -> CaseForm:
    """Check a parsed form: known field names, files in file fields, counts, non-empty files, whole pairs.
    MONAI Label's ``file``/``label`` become ``<mod>_image``/``<mod>_mask`` (``model_modalities``: the model's)."""
    allowed = upload_fields(modalities)
    params = read_params(form.getlist(PARAMS_FIELD))
    check_modality_param(params, modalities)
    parts: dict[str, list[UploadFile]] = {}
    sent_as: dict[str, str] = {}  # our field name -> the client's
    for field, value in form.multi_items():
        if field == PARAMS_FIELD:
            continue
        if field not in allowed and field not in MONAI_LABEL_FIELDS:
            raise UploadError(f"unknown file field {field!r}; this run accepts {', '.join(allowed)} (and params), "
                              f"or MONAI Label's file and label")
        if not isinstance(value, UploadFile):
            raise UploadError(f"field {field!r} must be a file upload, not a text value")
        if not value.size:
            raise UploadError(f"{client_name(field, value)} is an empty file")
        ours = (f"{monai_label_modality(field, params, model_modalities)}_{MONAI_LABEL_FIELDS[field]}"
                if field in MONAI_LABEL_FIELDS else field)
        if sent_as.setdefault(ours, field) != field:
            raise UploadError(f"fields {sent_as[ours]!r} and {field!r} both carry {ours}; send one of them")
        parts.setdefault(ours, []).append(value)
    files = {}
    for modality in modalities:
        image_field, mask_field = (f"{modality}_{kind}" for kind in KINDS)
        images, masks = parts.get(image_field, []), parts.get(mask_field, [])
        if bool(images) != bool(masks):
            given, absent = (image_field, mask_field) if images else (mask_field, image_field)
            given = sent_as[given]
            absent = {"file": "label", "label": "file"}.get(given, absent)
            raise UploadError(f"{given} was uploaded without {absent}: send both files of modality {modality}")
        if len(masks) > MAX_MASK_FILES:
            raise UploadError(f"{sent_as[mask_field]} was sent {len(masks)} times; at most {MAX_MASK_FILES} mask "
                              f"files per modality")
        if images:
            files[modality] = {"image": images, "mask": masks}
    return CaseForm(files, params, sorted(set(params) - set(PARAMS)))


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


def save_uploads(form: CaseForm, folder: Path) -> SavedUploads:
    """Copy the files of a checked form into ``folder``."""
    files, names = {}, {}
    for modality, parts in form.files.items():
        image_field, mask_field = (f"{modality}_{kind}" for kind in KINDS)
        images, masks = parts["image"], parts["mask"]
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
    names[str(path)] = client_name(field, upload)
    return path
