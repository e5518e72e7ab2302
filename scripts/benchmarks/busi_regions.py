#!/usr/bin/env python
"""Peritumoral ring and contour robustness on real data: BUSI (Al-Dhabyani et al. 2020), radiomics only.

1. The manifest: ``busi_dup.csv`` of the BUSI quality benchmark (``mmdlr import-busi --keep-duplicates``:
   same-label duplicates share a ``group``), read from ``--manifest`` or imported into ``--work``.
2. ROI crops with ``roi.regions: both`` (the lesion and a ring of ``--peritumoral-mm`` around it; BUSI's PNGs
   record no spacing, so 1 mm = 1 pixel), 2D PyRadiomics of both regions (``configs/radiomics_2d.yaml``), and
   their re-extraction under each ``--perturbations`` contour perturbation (``mmdlr.radiomics.robustness``).
3. Every feature's ICC(3,1) (pingouin) over the original and perturbed contours, written with a figure of
   its distribution per feature class.
4. ``mmdlr.analysis.run_analysis`` with ``configs/nested_cv.yaml`` (stratified 5-fold x ``--repeats``, grouped
   by duplicate group), radiomics only, classifiers ``--classifiers``: once as is (rows US = intratumoral,
   US peritumoral, US intra+peritumoral) and once with ``select.icc_threshold`` (robust features only, the
   ICC computed on each training fold's patients).

Writes ``docs/benchmarks/busi_regions.csv`` (result rows) and ``docs/benchmarks/busi_regions_icc.{csv,png}``.
The BUSI images are read in place; ROIs and tables go to ``--work`` (outside the repository).

    .venv/bin/python scripts/benchmarks/busi_regions.py            # the run in docs/benchmarks.md
    .venv/bin/python scripts/benchmarks/busi_regions.py --quick    # smoke run: 80 images
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from busi_quality import (REPO, analysis_config, delong_vs, import_manifests, result_rows,  # noqa: E402
                          run_one, write_csv)

log = logging.getLogger("busi_regions")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busi", type=Path, default=Path("/work/shared/data/busi"), help="BUSI folder (read only)")
    parser.add_argument("--manifest", type=Path, default=Path("/tmp/mmdlr-bench/busi/busi_dup.csv"),
                        help="busi_dup.csv of the quality benchmark (imported into --work when absent)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmdlr-bench/busi_regions"),
                        help="ROIs, feature tables and analysis outputs; reused when present")
    parser.add_argument("--csv", type=Path, default=REPO / "docs/benchmarks/busi_regions.csv")
    parser.add_argument("--peritumoral-mm", type=float, default=3.0, help="ring width (BUSI: pixels)")
    parser.add_argument("--perturbations", default="erode_1px,dilate_1px,jitter_1px",
                        help="contour perturbations for the ICC (comma list)")
    parser.add_argument("--perturb-regions", default="intratumoral,peritumoral",
                        help="regions re-extracted under the perturbations (comma list)")
    parser.add_argument("--icc-threshold", type=float, default=0.9, help="robust-only: keep ICC >= this")
    parser.add_argument("--classifiers", default="lr,svm", help="classifiers searched (comma list)")
    parser.add_argument("--repeats", type=int, default=1, help="nested CV repeats (outer 5-fold x REPEATS)")
    parser.add_argument("--n-jobs", type=int, default=2, help="radiomics and analysis workers")
    parser.add_argument("--steps", default="all,robust",
                        help="analyses to run: all (every feature), robust (ICC >= threshold); comma list")
    parser.add_argument("--quick", action="store_true", help="smoke run: 80 images, 200 bootstraps")
    return parser.parse_args(argv)


def region_features(manifest: Path, work: Path, args: argparse.Namespace) -> Path:
    """ROIs with both regions and their radiomics under ``work/features`` (kept when present)."""
    from mmdlr.io.manifest import read_manifest
    from mmdlr.radiomics.extract import extract_cohort
    from mmdlr.roi.cache import RoiSettings, crop_cohort

    folder = work / "features"
    if (folder / "radiomics_us_peritumoral.csv").is_file():
        return folder
    start = time.perf_counter()
    margin = max(10, math.ceil(args.peritumoral_mm) + 2)  # the ring and a dilation fit inside the crop
    index = crop_cohort(read_manifest(manifest), work,
                        RoiSettings(margin=margin, regions="both", peritumoral_mm=args.peritumoral_mm))
    extract_cohort(index, folder, n_jobs=args.n_jobs, regions=("intratumoral", "peritumoral"))
    log.info("radiomics, both regions: %.0f s", time.perf_counter() - start)
    return folder


def perturbed_features(folder: Path, work: Path, args: argparse.Namespace) -> None:
    """The radiomics of ``--perturb-regions`` re-extracted under every perturbation (kept when present)."""
    from mmdlr.radiomics.robustness import extract_perturbed

    perturbations, regions = args.perturbations.split(","), tuple(args.perturb_regions.split(","))
    tables = {"intratumoral": "radiomics_us", "peritumoral": "radiomics_us_peritumoral"}
    if all((folder / "robustness" / tables[r] / f"{p}.csv").is_file() for r in regions for p in perturbations):
        return
    start = time.perf_counter()
    index = pd.read_csv(work / "roi" / "roi_index.csv", dtype={"patient_id": str, "group": str, "split": str},
                        keep_default_na=False)
    extract_perturbed(index, folder, perturbations, regions=regions, n_jobs=args.n_jobs)
    log.info("radiomics with perturbations: %.0f s", time.perf_counter() - start)


def write_icc(folder: Path, args: argparse.Namespace) -> None:
    """Every feature's ICC(3,1) (csv), its distribution per feature class (png) and a summary (printed)."""
    from mmdlr.radiomics.robustness import icc_table, plot_icc_by_class

    icc = icc_table(folder)
    csv = args.csv.with_name(f"{args.csv.stem}_icc.csv")
    icc.round(4).to_csv(csv, index=False)
    plot_icc_by_class(icc, csv.with_suffix(".png"), args.icc_threshold)
    summary = icc.groupby(["table", "feature_class"])["icc"].describe()[["count", "25%", "50%", "75%"]]
    summary["below_threshold"] = icc.assign(low=icc["icc"] < args.icc_threshold).groupby(
        ["table", "feature_class"])["low"].sum()
    print(summary.round(3).to_string())


def analysis_name(threshold: float | None) -> str:
    return f"regions_{'robust' if threshold is not None else 'all'}"


def with_delong(rows: list[dict], work: Path, runs: dict[str, str]) -> list[dict]:
    """Each row's DeLong p against the lesion alone with every feature (row US of the first analysis), on the
    pooled out-of-fold probabilities of the same images; ``runs``: family label -> analysis folder name."""
    predictions = []
    for family in dict.fromkeys(row["family"] for row in rows):
        path = work / "analysis" / runs[family] / "results" / "predictions.csv"
        if path.is_file():
            predictions.append(pd.read_csv(path, dtype={"patient_id": str}).assign(family=family))
    if not predictions:
        return rows
    predictions = pd.concat(predictions, ignore_index=True)
    reference = ("radiomics (all features)", "US")
    return [row | {"delong_p_vs_radiomics": delong_vs(predictions, row["family"], row["fusion"], reference)}
            for row in rows]


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("mmdlr").setLevel(logging.WARNING)
    work = args.work / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    manifest = args.manifest
    if not manifest.is_file():
        _, manifest = import_manifests(args.busi, args.work, False)
    if args.quick:
        table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
        manifest = work / "busi_dup_quick.csv"
        pd.concat([part.head(40) for _, part in table.groupby("label")]).to_csv(manifest, index=False)
    folder = region_features(manifest, work, args)

    classifiers = args.classifiers.split(",")
    common = {"families": ["radiomics"], "classifiers": classifiers, "save_models": False,
              "bootstrap.n": 200 if args.quick else 2000, "parallel.n_jobs": args.n_jobs,
              "nested_cv.repeats": args.repeats, "fusion.ensemble": False, "fusion.stacking": False}
    protocol = f"nested_cv 5-fold x {args.repeats}, duplicates kept (grouped)"
    note = f"classifiers searched: {','.join(classifiers)}; ring {args.peritumoral_mm:g} px"
    rows = pd.read_csv(args.csv).to_dict("records") if args.csv.is_file() else []  # the other step's rows
    analyses = {"all": ("all features", None), "robust": (f"ICC >= {args.icc_threshold:g}", args.icc_threshold)}
    for name, threshold in [analyses[step] for step in filter(None, args.steps.split(","))]:
        rows = [row for row in rows if row["family"] != f"radiomics ({name})"]
        if threshold is not None:
            perturbed_features(folder, work, args)
            write_icc(folder, args)
        config = analysis_config("nested_cv.yaml", **common, **{"select.icc_threshold": threshold})
        result, seconds = run_one(analysis_name(threshold), folder, work, config)
        rows += result_rows(result, protocol, {"radiomics": f"radiomics ({name})"}, seconds, note)
        write_csv(rows, args.csv)
    runs = {f"radiomics ({name})": analysis_name(threshold) for name, threshold in analyses.values()}
    frame = write_csv(with_delong(rows, work, runs), args.csv)
    print(frame[["family", "fusion", "classifier", "auc", "auc_low", "auc_high", "pooled_auc",
                 "delong_p_vs_radiomics", "seconds"]]
          .round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
