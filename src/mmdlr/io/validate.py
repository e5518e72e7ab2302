"""`mmdlr validate`: every problem of a manifest and its files, reported at once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pandas as pd
from tqdm.auto import tqdm

from mmdlr.errors import ManifestError, find_case_error
from mmdlr.io.loading import load_case_transforms
from mmdlr.io.manifest import LABEL_NAMES, Manifest


@dataclass
class ValidationReport:
    """Problems found (empty when valid) and a per-modality summary table."""

    problems: list[str] = field(default_factory=list)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_manifest(path: str | os.PathLike, label_value: int | None = None,
                      progress: bool = True) -> ValidationReport:
    """Check the manifest's structure, then load every image and mask of every modality."""
    try:
        manifest = Manifest.from_csv(path)
    except ManifestError as error:
        return ValidationReport(problems=error.problems)
    problems = manifest.structural_problems()
    if any("column" in p for p in problems):
        return ValidationReport(problems=problems)
    load = load_case_transforms(label_value)
    rows = []
    cases = [case for modality in manifest.modalities for case in manifest.cases(modality)]
    loaded: dict[str, list[dict]] = {m: [] for m in manifest.modalities}
    for case in tqdm(cases, desc="validate", unit="image", disable=not progress):
        if case["label"] is None:
            continue
        try:
            loaded_case = load(dict(case))
        except Exception as error:
            cause = find_case_error(error)
            if cause is None:
                raise
            problems.append(f"{case['modality']}: {cause}")
            continue
        loaded[case["modality"]].append({"label": case["label"], "ndim": loaded_case["image"].ndim - 1})
    for modality, items in loaded.items():
        labels = pd.Series([item["label"] for item in items], dtype=int)
        rows.append({
            "modality": modality,
            "patients": len(items),
            "missing": len(manifest.table) - len(manifest.cases(modality)),
            LABEL_NAMES[0]: int((labels == 0).sum()),
            LABEL_NAMES[1]: int((labels == 1).sum()),
            "dimensions": "/".join(sorted({f"{item['ndim']}D" for item in items})),
        })
    return ValidationReport(problems=problems, summary=pd.DataFrame(rows))
