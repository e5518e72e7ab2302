"""Robustness to the contour: radiomics re-extracted under small contour perturbations, and each feature's ICC.

For every cached ROI and perturbation (``erode_1px``, ``dilate_0.5mm``, ``jitter_1px``: see
:func:`mmdlr.roi.regions.perturb_mask`) the lesion mask is perturbed (the peritumoral ring is then the ring
around the perturbed lesion) and written next to the ROI as ``mask_<perturbation>[_peritumoral].nii.gz``;
its features go to ``OUT/robustness/<table>/<perturbation>.csv`` (``<table>``: ``radiomics_<mod>`` or
``radiomics_<mod>_peritumoral``, the table they perturb). ``icc_table`` gives every feature's ICC(3,1)
(:func:`mmdlr.select.icc.feature_icc`); the analysis can drop features below a threshold inside the
training folds (``select.icc_threshold``, :class:`mmdlr.select.icc.ICCThresholdSelector`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import SimpleITK as sitk
from matplotlib.figure import Figure

from mmdlr.analysis.features import read_perturbed
from mmdlr.atomic import atomic_path, write_csv
from mmdlr.errors import CaseError
from mmdlr.io.writers import write_nifti
from mmdlr.parallel import ordered_results
from mmdlr.pipeline.stages import code_version
from mmdlr.radiomics.extract import DEFAULT_PARAMS, ID_COLUMNS, extract_roi, region_table_name, roi_files
from mmdlr.roi.regions import PerturbContourd, parse_perturbation, peritumoral_ring
from mmdlr.select.icc import feature_icc

ROBUSTNESS_DIR = "robustness"  # read back by mmdlr.analysis.features.read_perturbed
ICC_TABLE = "icc.csv"  # every feature's ICC on all patients (label-free), for the report


def perturbed_mask_name(perturbation: str, region: str) -> str:
    return f"mask_{perturbation}" + ("" if region == "intratumoral" else f"_{region}")


def _write_perturbed_masks(roi_dir: Path, perturbation: str, use_volume: bool, patient_id: str,
                           regions: tuple[str, ...]) -> None:
    """The perturbed lesion (and the ring around it) of one ROI, written once next to it."""
    suffix = "_3d" if use_volume else ""
    targets = {region: roi_dir / f"{perturbed_mask_name(perturbation, region)}{suffix}.nii.gz" for region in regions}
    if all(path.is_file() for path in targets.values()):
        return
    _, mask_path = roi_files(roi_dir, use_volume)
    image = sitk.ReadImage(str(mask_path))
    spacing = image.GetSpacing()[::-1]
    data = PerturbContourd(("mask",), perturbation)({"mask": sitk.GetArrayFromImage(image) > 0,
                                                     "spacing": spacing, "patient_id": patient_id})
    lesion = data["mask"]
    if not lesion.any():
        raise CaseError(f"contour perturbation {perturbation} leaves no lesion pixel: choose a smaller size",
                        patient_id, str(mask_path))
    width = json.loads((roi_dir / "roi.json").read_text())["settings"].get("peritumoral_mm", 3.0)
    masks = {"intratumoral": lesion, "peritumoral": peritumoral_ring(lesion, width, spacing)}
    for region, path in targets.items():
        write_nifti(masks[region].astype(np.uint8), spacing, path)


def _extract_perturbed(row: dict, params: Path, use_volume: bool, perturbation: str, regions: tuple[str, ...],
                       code: str) -> list[dict]:
    try:
        _write_perturbed_masks(Path(row["roi_dir"]), perturbation, use_volume, row["patient_id"], regions)
        return [row | {"region": region, "perturbation": perturbation}
                | extract_roi(row["roi_dir"], params, use_volume, code, perturbed_mask_name(perturbation, region))
                for region in regions]
    except Exception as error:
        return [row | {"error": f"{perturbation}: {type(error).__name__}: {error}", "file": row["roi_dir"]}]


def extract_perturbed(roi_index: pd.DataFrame, out_dir: str | os.PathLike, perturbations: list[str],
                      dimension: str = "2d", params: dict[str, str | os.PathLike] | None = None,
                      regions: tuple[str, ...] = ("intratumoral",), n_jobs: int = 1, backend: str = "loky",
                      progress: bool = True) -> list[Path]:
    """Write ``OUT/robustness/<table>/<perturbation>.csv`` for every perturbation, region and modality, and
    ``OUT/robustness/icc.csv`` (:func:`icc_table`).

    Every failed patient is listed in one CaseError (no table written)."""
    for perturbation in perturbations:
        parse_perturbation(perturbation)
    params = {k: Path(v) for k, v in (DEFAULT_PARAMS | (params or {})).items()}
    code = code_version()
    jobs = [joblib.delayed(_extract_perturbed)(row, params["3d" if use_volume else "2d"], use_volume, perturbation,
                                               regions, code)
            for row in roi_index.to_dict("records") for use_volume in [dimension == "3d" and int(row["ndim"]) == 3]
            for perturbation in perturbations]
    with joblib.parallel_config(backend=backend, n_jobs=n_jobs):
        results = [r for rs in ordered_results(jobs, "radiomics robustness", "roi", progress) for r in rs]
    failures = [f"{r['modality']}: patient {r['patient_id']}, ROI {r['file']}: {r['error']}"
                for r in results if "error" in r]
    if failures:
        raise CaseError(f"perturbed radiomics failed for {len(failures)} ROI(s):\n  " + "\n  ".join(failures))
    written = []
    table = pd.DataFrame(results)
    for (modality, region, perturbation), part in table.groupby(["modality", "region", "perturbation"], sort=True):
        features = part.drop(columns=[c for c in [*roi_index.columns, "region", "perturbation"]
                                      if c not in ID_COLUMNS]).dropna(axis=1, how="all")
        written.append(write_csv(features, Path(out_dir) / ROBUSTNESS_DIR / region_table_name(modality, region)
                                 / f"{perturbation}.csv"))
    written.append(write_csv(icc_table(out_dir), Path(out_dir) / ROBUSTNESS_DIR / ICC_TABLE))
    return written


def feature_class(feature: str) -> str:
    """PyRadiomics feature class of a (possibly block-prefixed) name: ``original_glcm_Contrast`` -> ``glcm``."""
    parts = feature.rpartition("__")[2].split("_")
    return parts[-2] if len(parts) >= 3 else "other"


def icc_table(features_dir: str | os.PathLike) -> pd.DataFrame:
    """ICC(3,1) of every feature of every radiomics table with perturbed re-extractions under
    ``features_dir``: table, feature, feature class, ICC and its 95% CI, patients."""
    frames = []
    for table in sorted(Path(features_dir).glob("radiomics_*.csv")):
        perturbed = read_perturbed(table)
        if not perturbed:
            continue
        original = pd.read_csv(table, dtype={"patient_id": str}).set_index("patient_id")
        columns = [c for c in original.columns if c not in ID_COLUMNS
                   and all(c in other.columns for other in perturbed.values())]
        ratings = {"original": original[columns]} | {name: other[columns] for name, other in perturbed.items()}
        icc = feature_icc(ratings).reset_index()
        frames.append(icc.assign(table=table.stem, feature_class=icc["feature"].map(feature_class)))
    columns = ["table", "feature", "feature_class", "icc", "icc_low", "icc_high", "n_patients"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def icc_figure(icc: pd.DataFrame, threshold: float | None = None) -> Figure:
    """Box plots of the ICC(3,1) distribution per feature class (of :func:`icc_table`), one panel per table;
    ``threshold`` drawn as a dashed line."""
    tables = list(dict.fromkeys(icc["table"]))
    figure = Figure(figsize=(5 * len(tables), 3.6), layout="tight")
    axes = figure.subplots(1, len(tables), squeeze=False, sharey=True)[0]
    for ax, table in zip(axes, tables):
        part = icc[(icc["table"] == table) & icc["icc"].notna()]
        classes = sorted(set(part["feature_class"]))
        ax.boxplot([part.loc[part["feature_class"] == c, "icc"] for c in classes])
        ax.set_xticks(range(1, len(classes) + 1), [f"{c}\n(n={int((part['feature_class'] == c).sum())})"
                                                   for c in classes], fontsize=7)
        if threshold is not None:
            ax.axhline(threshold, color="tab:red", linestyle="--", linewidth=1, label=f"threshold {threshold}")
            ax.legend(fontsize=7, loc="lower left")
        ax.set_title(table, fontsize=9)
    axes[0].set_ylabel("ICC(3,1) under contour perturbations")
    return figure


def plot_icc_by_class(icc: pd.DataFrame, path: str | os.PathLike, threshold: float | None = None) -> Path:
    """:func:`icc_figure` written as a PNG."""
    with atomic_path(path) as temp:
        icc_figure(icc, threshold).savefig(temp, dpi=110, format="png")
    return Path(path)
