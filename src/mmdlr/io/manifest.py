"""The cohort manifest: one CSV row per patient, an image/mask column pair per modality.

Columns: ``patient_id``, ``label`` (0/1 or benign/malignant), ``<mod>_image`` and ``<mod>_mask`` per
modality, optional ``split`` (train/test), optional ``group`` (patients never split apart), optional
``center`` (the site or scanner a patient was imaged at; every row or none), and any clinical columns.
Paths are absolute or relative to the CSV's folder; several mask files are separated by ``;`` and unioned (a DICOM SEG or RTSTRUCT file may be followed by ``#<segment or ROI>``, see
``mmdlr.io.dicom_masks``); an empty cell means the modality is missing for that patient.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mmdlr.errors import ManifestError

LABELS = {"0": 0, "1": 1, "benign": 0, "malignant": 1, "0.0": 0, "1.0": 1}
LABEL_NAMES = ("benign", "malignant")
SPLITS = ("train", "test", "")
RESERVED = ("patient_id", "label", "split", "group", "center")
MASK_SEPARATOR = ";"
# Modality names become file names and bundle values: plain lowercase words only.
MODALITY_NAME = re.compile(r"[a-z][a-z0-9]{0,15}")


def modality_name_problem(modality: str) -> str | None:
    """Why ``modality`` cannot be a modality name, or None when it can."""
    if MODALITY_NAME.fullmatch(modality):
        return None
    return (f"modality name {modality!r} must be 1-16 lowercase letters or digits starting with a letter "
            "(e.g. us, mg, mr2)")


def _unsafe_in_paths(name: str) -> bool:
    """Whether ``name`` cannot be a file or folder name (patient ids and centres name output files)."""
    return name in (".", "..") or any(c in name for c in "/\\") or not name.isprintable()


def parse_label(value: str) -> int | None:
    """0/1 or benign/malignant (any case) -> 0/1; anything else -> None."""
    return LABELS.get(str(value).strip().lower())


@dataclass
class Manifest:
    """A parsed manifest; ``table`` holds normalised cells (strings, labels as int)."""

    path: Path
    table: pd.DataFrame
    modalities: list[str]

    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> "Manifest":
        path = Path(path).resolve()
        if not path.is_file():
            raise ManifestError([f"manifest {path} not found"])
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
        except Exception as error:
            raise ManifestError([f"manifest {path} is not a readable CSV ({error})"]) from error
        table.columns = [c.strip() for c in table.columns]
        table = table.apply(lambda col: col.str.strip())
        modalities = [c[: -len("_image")] for c in table.columns if c.endswith("_image")]
        modalities += [c[: -len("_mask")] for c in table.columns
                       if c.endswith("_mask") and c[: -len("_mask")] not in modalities]
        return cls(path=path, table=table, modalities=modalities)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def clinical_columns(self) -> list[str]:
        paired = {f"{m}_{kind}" for m in self.modalities for kind in ("image", "mask")}
        return [c for c in self.table.columns if c not in RESERVED and c not in paired]

    def resolve(self, cell: str) -> str:
        """Absolute path for a manifest cell (relative cells are relative to the CSV's folder)."""
        path = Path(cell).expanduser()
        return str(path if path.is_absolute() else (self.base_dir / path).resolve())

    def structural_problems(self) -> list[str]:
        """Every problem that can be found without opening image files."""
        problems = []
        columns = set(self.table.columns)
        for required in ("patient_id", "label"):
            if required not in columns:
                problems.append(f"missing required column '{required}'")
        if not self.modalities:
            problems.append("no modality columns: expected pairs like 'us_image', 'us_mask'")
        for modality in self.modalities:
            problem = modality_name_problem(modality)
            if problem:
                column = f"{modality}_image" if f"{modality}_image" in columns else f"{modality}_mask"
                problems.append(f"column {column!r}: {problem}; rename the column")
                continue
            for kind in ("image", "mask"):
                if f"{modality}_{kind}" not in columns:
                    problems.append(f"modality '{modality}' has no '{modality}_{kind}' column")
        if problems:
            return problems
        ids = self.table["patient_id"]
        for row, pid in enumerate(ids, start=2):
            if not pid:
                problems.append(f"row {row}: empty patient_id")
            elif _unsafe_in_paths(pid):
                problems.append(f"row {row}: patient_id {pid!r} names output files: use no '/', '\\', "
                                "control characters, '.' or '..'")
        for pid, rows in self.table.groupby("patient_id").groups.items():
            if pid and len(rows) > 1:
                lines = ", ".join(str(int(r) + 2) for r in rows)
                problems.append(f"patient {pid}: duplicate patient_id on rows {lines}")
        for pid, label in zip(ids, self.table["label"]):
            if parse_label(label) is None:
                problems.append(f"patient {pid}: bad label {label!r} (use 0/1 or benign/malignant)")
        labels = {parse_label(v) for v in self.table["label"]} - {None}
        if len(labels) < 2 and len(self.table):
            problems.append(f"only one class present ({', '.join(LABEL_NAMES[v] for v in labels) or 'none'}): "
                            "need benign and malignant patients")
        if "split" in columns:
            for pid, split in zip(ids, self.table["split"]):
                if split.lower() not in SPLITS:
                    problems.append(f"patient {pid}: bad split {split!r} (use train or test)")
            if "group" in columns:
                grouped = self.table[self.table["group"] != ""].groupby("group")["split"]
                for group, splits in grouped:
                    if splits.str.lower().nunique() > 1:
                        problems.append(f"group {group}: its patients are in both train and test")
        if "center" in columns:
            problems += self._center_problems()
        for _, row in self.table.iterrows():
            present = 0
            for modality in self.modalities:
                image, mask = row[f"{modality}_image"], row[f"{modality}_mask"]
                if image and not mask:
                    problems.append(f"patient {row['patient_id']}: {modality} image {image} has no mask")
                elif mask and not image:
                    problems.append(f"patient {row['patient_id']}: {modality} mask {mask} has no image")
                present += bool(image and mask)
            if not present:
                problems.append(f"patient {row['patient_id']}: no modality present")
        return problems

    def _center_problems(self) -> list[str]:
        """A ``center`` column names every patient's centre or none (one problem naming the empty rows); a
        group imaged at two centres is a problem too (leave-centre-out would split it)."""
        centers = self.table["center"]
        problems = []
        empty = [f"{row} ({pid})" for row, (pid, center) in enumerate(zip(self.table["patient_id"], centers), start=2)
                 if not center]
        if empty and len(empty) < len(centers):
            shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
            problems.append(f"center is empty on row(s) {shown} while other rows name one: give every patient "
                            "its center (site or scanner) or leave the whole column empty")
        problems += [f"row {row}: center {center!r} names output folders: use no '/', '\\', control characters, "
                     "'.' or '..'" for row, center in enumerate(centers, start=2)
                     if center and _unsafe_in_paths(center)]
        if "group" in self.table.columns:
            named = self.table[(self.table["group"] != "") & (centers != "")]
            for group, members in named.groupby("group")["center"]:
                if members.nunique() > 1:
                    problems.append(f"group {group}: its patients are at centers {', '.join(sorted(set(members)))}; "
                                    "a group must belong to one center")
        return problems

    @property
    def centers(self) -> pd.Series | None:
        """Each patient's centre by patient_id, or None when the manifest names no centres."""
        if "center" not in self.table.columns or (self.table["center"] == "").all():
            return None
        return self.table.set_index("patient_id")["center"]

    def cases(self, modality: str, split: str | None = None) -> list[dict]:
        """Per-patient dicts for one modality (patients missing it are left out)."""
        if modality not in self.modalities:
            raise ManifestError([f"modality '{modality}' not in manifest (has: {', '.join(self.modalities)})"])
        cases = []
        for _, row in self.table.iterrows():
            image, mask = row[f"{modality}_image"], row[f"{modality}_mask"]
            row_split = row.get("split", "").lower()
            if not image or not mask or (split is not None and row_split != split):
                continue
            cases.append({
                "patient_id": row["patient_id"],
                "label": parse_label(row.get("label", "")),
                "split": row_split,
                "group": row.get("group", "") or row["patient_id"],
                "center": row.get("center", ""),
                "modality": modality,
                "image": self.resolve(image),
                "mask": [self.resolve(p) for p in mask.split(MASK_SEPARATOR) if p.strip()],
            })
        return cases


def case_label(case: dict) -> str:
    """How messages name one case (a :meth:`Manifest.cases` dict, or a row of the ROI index): ``us: patient P0012``."""
    return f"{case['modality']}: patient {case['patient_id']}"


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Parse a manifest and raise ManifestError listing every structural problem."""
    manifest = Manifest.from_csv(path)
    problems = manifest.structural_problems()
    if problems:
        raise ManifestError(problems)
    return manifest


def manifest_cases(manifest_path: str | os.PathLike, modality: str, split: str | None = None) -> list[dict]:
    """The cases of one modality of a manifest file (for use from bundle JSON configs)."""
    return read_manifest(manifest_path).cases(modality, split or None)
