"""Errors a user can act on, naming the patient, file or setting a problem comes from.

Every :class:`UserError` (and any ``ValueError`` or ``OSError``) is *anticipated*: ``mmdlr`` prints it
as one line, ``mmdlr <command>: error: <message>``, and exits 2. Each subclass also derives from the
built-in type it is, so ``except ValueError`` keeps catching a :class:`CaseError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


class UserError(Exception):
    """A problem with the input, the configuration or the environment that the user can fix."""


class CaseError(UserError, ValueError):
    """A problem with one patient's input (corrupt file, geometry mismatch, empty mask, ...)."""

    def __init__(self, message: str, patient_id: str | None = None, path: str | None = None):
        self.patient_id = patient_id
        self.path = path
        self.reason = message
        where = ", ".join(part for part in (
            f"patient {patient_id}" if patient_id else "",
            f"file {path}" if path else "",
        ) if part)
        super().__init__(f"{where}: {message}" if where else message)


class ManifestError(UserError, ValueError):
    """A manifest with one or more problems; ``problems`` lists every one."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("manifest has %d problem(s):\n  %s" % (len(problems), "\n  ".join(problems)))


class WeightsError(UserError, RuntimeError):
    """Pretrained weights that cannot be found, fetched or loaded; ``file_name`` and ``cache_path`` name
    the checkpoint an offline user can place by hand (None for a local file or a wheel)."""

    def __init__(self, message: str, file_name: str | None = None, cache_path: str | None = None):
        self.file_name = file_name
        self.cache_path = cache_path
        super().__init__(message)


class WorkerKilledError(UserError, RuntimeError):
    """The system ended a worker process (out of memory, or a crash in a library) while it worked on one of
    ``suspects``."""

    def __init__(self, message: str, suspects: list[str]):
        self.suspects = list(suspects)
        super().__init__(message)


class PreflightError(UserError, ValueError):
    """What a run needs that is missing, found before any stage ran; ``problems`` lists every one."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(problems) if len(problems) == 1 else
                         f"{len(problems)} problems before any stage ran: " + "; ".join(problems))


def causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the exceptions behind it, outermost first (``raise ... from`` and implicit context)."""
    seen = set()
    while error is not None and id(error) not in seen:
        yield error
        seen.add(id(error))
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)


def find_cause(error: BaseException, kinds: type | tuple[type, ...]) -> BaseException | None:
    """The outermost exception of ``kinds`` behind ``error`` (MONAI's Compose and config parser re-raise
    the errors of transforms and expressions as ``RuntimeError``), or None."""
    return next((cause for cause in causes(error) if isinstance(cause, kinds)), None)


def find_case_error(error: BaseException) -> CaseError | None:
    """The CaseError behind an exception, or None."""
    return find_cause(error, CaseError)


def case_problem(error: BaseException, case: dict) -> CaseError | None:
    """What ``error`` says is wrong with one case (a manifest row's ``image`` and ``mask`` files): the CaseError
    behind it, or the OSError of opening one of the case's files (a name too long, no permission) as a
    CaseError naming the patient; None for anything else, such as an output folder that cannot be written.
    (MONAI wraps an OSError in a RuntimeError, and a worker process hands back that RuntimeError alone.)"""
    found = find_case_error(error)
    if found is not None:
        return found
    cause = find_cause(error, OSError)
    if cause is None or not isinstance(cause.filename, str | os.PathLike):
        return None
    if not any(Path(cause.filename).is_relative_to(path) for path in (case["image"], *case["mask"])):
        return None  # not one of the case's files (or a file of its DICOM folder)
    return CaseError(cause.strerror or str(cause), case["patient_id"], cause.filename)
