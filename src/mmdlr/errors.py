"""Errors that name the patient and the file a problem comes from."""

from __future__ import annotations


class CaseError(ValueError):
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


class ManifestError(ValueError):
    """A manifest with one or more problems; ``problems`` lists every one."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("manifest has %d problem(s):\n  %s" % (len(problems), "\n  ".join(problems)))


def find_case_error(error: BaseException) -> CaseError | None:
    """The CaseError behind an exception (MONAI's Compose re-raises transform errors as RuntimeError)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, CaseError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
