"""PyRadiomics extraction per ROI, cached, parallel over patients, one table per modality.

2D ROIs (the largest lesion slice, or a 2D image) use ``configs/radiomics_2d.yaml``; with
``dimension="3d"`` volumetric modalities use their 3D ROI and ``configs/radiomics_3d.yaml``. The
peritumoral ring's features (``roi.regions``) go to ``radiomics_<mod>_peritumoral.csv``, a block of its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

import joblib
import pandas as pd

from mmdlr.atomic import write_csv, write_text
from mmdlr.errors import CaseError
from mmdlr.io.manifest import case_label
from mmdlr.parallel import ordered_results
from mmdlr.paths import CONFIG_DIR
from mmdlr.pipeline.stages import code_version

ID_COLUMNS = ["patient_id", "label", "split", "group", "center"]
DEFAULT_PARAMS = {"2d": CONFIG_DIR / "radiomics_2d.yaml", "3d": CONFIG_DIR / "radiomics_3d.yaml"}
EXTRACTOR_LOCK = threading.Lock()  # PyRadiomics' extractor set-up (pykwalify, ruamel) is not thread-safe


def roi_files(roi_dir: Path, use_volume: bool, mask_name: str = "mask") -> tuple[Path, Path]:
    suffix = "_3d" if use_volume else ""
    return roi_dir / f"image{suffix}.nii.gz", roi_dir / f"{mask_name}{suffix}.nii.gz"


def region_table_name(modality: str, region: str = "intratumoral") -> str:
    """``radiomics_<mod>`` (the lesion) or ``radiomics_<mod>_<region>`` (e.g. the peritumoral ring)."""
    return f"radiomics_{modality}" + ("" if region == "intratumoral" else f"_{region}")


def region_mask_name(region: str) -> str:
    """The ROI mask file (without suffix) of a region: ``mask`` or ``mask_peritumoral``."""
    return "mask" if region == "intratumoral" else f"mask_{region}"


def extract_roi(roi_dir: str | os.PathLike, params: str | os.PathLike, use_volume: bool = False,
                code: str | None = None, mask_name: str = "mask") -> dict[str, float]:
    """Features of one cached ROI's mask ``mask_name`` (diagnostics dropped), cached next to it under a hash of
    the ROI's key, the mask, the params, PyRadiomics' and mmdlr's code version (``code``, computed when not
    given)."""
    import radiomics
    from radiomics import featureextractor

    roi_dir = Path(roi_dir)
    image, mask = roi_files(roi_dir, use_volume, mask_name)
    roi_key = json.loads((roi_dir / "roi.json").read_text())["key"]
    key = hashlib.sha256(f"{roi_key}|{mask_name}|{Path(params).read_text()}|{use_volume}|{radiomics.__version__}|"
                         f"{code or code_version()}".encode()).hexdigest()[:16]
    cache = roi_dir / f"radiomics_{key}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    radiomics.setVerbosity(logging.ERROR)
    radiomics.logger.setLevel(logging.ERROR)  # setVerbosity quiets only PyRadiomics' own handler
    with EXTRACTOR_LOCK:
        extractor = featureextractor.RadiomicsFeatureExtractor(str(params))
    result = extractor.execute(str(image), str(mask))
    features = {name: float(value) for name, value in result.items() if not name.startswith("diagnostics_")}
    write_text(json.dumps(features), cache)
    return features


def _extract_row(row: dict, params: Path, use_volume: bool, code: str, region: str = "intratumoral") -> dict:
    try:
        return row | {"region": region} | extract_roi(row["roi_dir"], params, use_volume, code,
                                                      region_mask_name(region))
    except Exception as error:
        _, mask = roi_files(Path(row["roi_dir"]), use_volume, region_mask_name(region))
        return row | {"error": f"{type(error).__name__}: {error}", "file": str(mask)}


def extract_cohort(roi_index: pd.DataFrame, out_dir: str | os.PathLike, dimension: str = "2d",
                   params: dict[str, str | os.PathLike] | None = None, n_jobs: int = 1,
                   backend: str = "loky", progress: bool = True,
                   regions: tuple[str, ...] = ("intratumoral",)) -> dict[str, Path]:
    """Write ``OUT/radiomics_<mod>.csv`` (and ``radiomics_<mod>_<region>.csv`` for the other ``regions``) for
    every modality of a ROI index; return their paths by table name (``radiomics_`` dropped: ``us``,
    ``us_peritumoral``).

    Every failed patient is listed in one CaseError (and no table of that modality is written).
    """
    if dimension not in DEFAULT_PARAMS:
        raise ValueError(f"dimension must be '2d' or '3d', not {dimension!r}")
    params = {k: Path(v) for k, v in (DEFAULT_PARAMS | (params or {})).items()}
    rows = roi_index.to_dict("records")
    code = code_version()
    jobs = [joblib.delayed(_extract_row)(row, params["3d" if use_volume else "2d"], use_volume, code, region)
            for row in rows for use_volume in [dimension == "3d" and int(row["ndim"]) == 3] for region in regions]
    names = [case_label(row) for row in rows for _ in regions]
    with joblib.parallel_config(backend=backend, n_jobs=n_jobs):
        results = ordered_results(jobs, "radiomics", "roi", progress, names)
    failures = [f"{r['modality']}: patient {r['patient_id']}, file {r['file']}: {r['error']}"
                for r in results if "error" in r]
    if failures:
        raise CaseError(f"radiomics failed for {len(failures)} ROI(s):\n  " + "\n  ".join(failures))
    written = {}
    table = pd.DataFrame(results)
    for (modality, region), part in table.groupby(["modality", "region"], sort=True):
        features = part.drop(columns=[c for c in [*roi_index.columns, "region"] if c not in ID_COLUMNS])
        features = features.dropna(axis=1, how="all")
        name = region_table_name(modality, region)
        written[name.removeprefix("radiomics_")] = write_csv(features, Path(out_dir) / f"{name}.csv")
    return written
