"""Which manifest cases each stage of the deep model sees.

The test split is never used for training or checkpoint selection: the development cases (split
``train`` or empty) are divided, by patient group and stratified by label, into a training part and a
validation part that picks the best checkpoint (validation AUC).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from sklearn.model_selection import StratifiedGroupKFold

PARTS = ("train", "val", "development", "test", "all")


def partition(cases: Sequence[dict], part: str, val_fraction: float = 0.2, seed: int = 0) -> list[dict]:
    """The cases of ``part``: ``train``/``val`` (of the development cases), ``development``, ``test`` or ``all``."""
    if part not in PARTS:
        raise ValueError(f"unknown part '{part}' (use one of {', '.join(PARTS)})")
    if part == "all":
        return list(cases)
    if part == "test":
        test = [case for case in cases if case["split"] == "test"]
        if not test:
            raise ValueError("no test patients with this modality (manifest split column); "
                             "choose another part: train, val, development or all")
        return test
    development = [case for case in cases if case["split"] != "test"]
    if part == "development":
        return development
    val_ids = _validation_ids(development, val_fraction, seed)
    return [case for case in development if (case["patient_id"] in val_ids) == (part == "val")]


def _validation_ids(cases: list[dict], val_fraction: float, seed: int) -> set[str]:
    labels = [case["label"] for case in cases]
    counts = {label: labels.count(label) for label in (0, 1)}
    if min(counts.values()) < 2:
        raise ValueError(f"need at least 2 benign and 2 malignant development cases for a train/validation "
                         f"split, have {counts[0]} benign and {counts[1]} malignant")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    n_splits = min(max(2, round(1 / val_fraction)), min(counts.values()))
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    groups = [case["group"] or case["patient_id"] for case in cases]
    _, val_index = next(folds.split(cases, labels, groups))
    if len({labels[i] for i in val_index}) < 2:
        raise ValueError("the validation part has a single class (patient groups too large for the cohort); "
                         "lower the number of patients per group or raise val_fraction")
    return {cases[i]["patient_id"] for i in val_index}


def select_patients(cases: Sequence[dict], patients_file: str | None = None, first: int = 8) -> list[dict]:
    """The cases of the patient ids listed in ``patients_file`` (a JSON list), else the first ``first``."""
    if not patients_file:
        return list(cases)[:first]
    wanted = json.loads(Path(patients_file).read_text(encoding="utf-8"))
    if not isinstance(wanted, list):
        raise ValueError(f"{patients_file} must hold a JSON list of patient ids")
    wanted = [str(pid) for pid in wanted]
    by_id = {case["patient_id"]: case for case in cases}
    missing = [pid for pid in wanted if pid not in by_id]
    if missing:
        raise ValueError(f"patient(s) {', '.join(missing)} of {patients_file} not among the {len(by_id)} cases "
                         "of this modality/part")
    return [by_id[pid] for pid in wanted]
