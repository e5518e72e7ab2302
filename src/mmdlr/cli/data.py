"""Data commands: validate, demo-data, import-busi, crop."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from typing import TYPE_CHECKING

from mmdlr.cli.pipeline import add_config_options, read_run_config

if TYPE_CHECKING:
    from mmdlr.roi.cache import RoiSettings


def add_mask_options(parser: argparse.ArgumentParser) -> None:
    lesion = parser.add_mutually_exclusive_group()
    lesion.add_argument("--label-value", type=int, default=None,
                        help="lesion label in the masks (default: any non-zero value)")
    lesion.add_argument("--mask-threshold", type=float, default=None,
                        help="lesion where the mask value is at least this, for masks with grey edges "
                             "(e.g. saved as JPEG); `mmdlr validate` suggests one")


def add_roi_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--margin", type=float, default=10, help="margin around the lesion box (default 10)")
    parser.add_argument("--margin-unit", choices=("pixel", "percent"), default="pixel",
                        help="unit of --margin: pixels, or percent of the lesion box's size (default pixel)")
    add_mask_options(parser)


def add_n_jobs_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-jobs", type=n_jobs, default=1, help="patients processed in parallel (-1: all cores)")


def n_jobs(text: str) -> int:
    """``--n-jobs``: a number of processes, at least 1, or -1 (as ``parallel.n_jobs``)."""
    value = int(text)
    if value != -1 and value < 1:
        raise argparse.ArgumentTypeError(f"{value} processes: give 1 or more, or -1 for all cores")
    return value


def roi_settings(args: argparse.Namespace) -> RoiSettings:
    from mmdlr.roi.cache import RoiSettings

    return RoiSettings(margin=args.margin, margin_unit=args.margin_unit, label_value=args.label_value,
                       mask_threshold=args.mask_threshold)


def run_validate(args: argparse.Namespace) -> int:
    from mmdlr.io.manifest import Manifest
    from mmdlr.io.validate import validate_manifest
    from mmdlr.pipeline.preflight import preflight

    config = read_run_config(args.config, args.set or []) if args.config else None
    report = validate_manifest(args.manifest, args.label_value, progress=not args.quiet,
                               mask_threshold=args.mask_threshold, n_jobs=args.n_jobs)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    problems = list(report.problems)
    if config is not None and Path(args.manifest).is_file():
        problems += preflight(Manifest.from_csv(args.manifest), config, args.out)
    if problems:
        print(f"{len(problems)} problem(s) in {args.manifest}:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"{args.manifest}: valid" + (f", and `mmdlr run` can start with {args.config}" if config else ""))
    print(report.summary.to_string(index=False))
    return 0


def run_demo_data(args: argparse.Namespace) -> int:
    from mmdlr.synthetic import CohortSettings, generate_cohort

    settings = CohortSettings(patients=args.patients, seed=args.seed, missing_rate=args.missing_rate,
                              benign_fraction=args.benign_fraction, centers=args.centers)
    manifest = generate_cohort(args.out, settings, progress=not args.quiet, n_jobs=args.n_jobs)
    where = f" at {settings.centers} centers" if settings.centers > 1 else ""
    print(f"wrote {settings.patients} synthetic patients{where}; manifest: {manifest}")
    return 0


def run_import_busi(args: argparse.Namespace) -> int:
    from mmdlr.io.busi import import_busi

    result = import_busi(args.busi_dir, args.out_csv, similarity=args.similarity, mask_iou=args.mask_iou,
                         same_image=args.same_image, keep_duplicates=args.keep_duplicates,
                         progress=not args.quiet)
    counts = result.manifest["label"].value_counts().to_dict()
    print(f"wrote {result.manifest_path}: {len(result.manifest)} images ({counts})")
    if len(result.removed):
        print(f"removed {len(result.removed)} (listed in {Path(args.out_csv).stem}_removed.csv):")
        print(result.removed["reason"].value_counts().to_string())
    return 0


def run_crop(args: argparse.Namespace) -> int:
    from mmdlr.io.manifest import read_manifest
    from mmdlr.roi.cache import crop_cohort

    index = crop_cohort(read_manifest(args.manifest), args.out, roi_settings(args), progress=not args.quiet,
                        n_jobs=args.n_jobs)
    print(f"{len(index)} ROIs under {Path(args.out) / 'roi'}")
    print(index.groupby("modality")["lesion_pixels"].describe()[["count", "mean", "min", "max"]].to_string())
    return 0


def register(subparsers) -> None:
    validate = subparsers.add_parser("validate", help="check a manifest and every file it names")
    validate.add_argument("manifest", help="cohort CSV to check")
    add_mask_options(validate)
    add_n_jobs_option(validate)
    add_config_options(validate, default=None)
    validate.add_argument("--out", default=None, help="with --config: the run folder, checked for writing")
    validate.set_defaults(handler=run_validate)

    demo = subparsers.add_parser("demo-data", help="write a synthetic multimodal cohort and its manifest")
    demo.add_argument("out", help="folder for the images, masks and manifest.csv")
    demo.add_argument("--patients", type=int, default=60, help="number of patients (default 60)")
    demo.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same files")
    demo.add_argument("--missing-rate", type=float, default=0.1, help="chance a modality is missing (default 0.1)")
    demo.add_argument("--benign-fraction", type=float, default=0.35, help="share of benign patients (default 0.35)")
    demo.add_argument("--centers", type=int, default=1,
                      help="centers A, B, ... each with its own scanners (intensity scale and offset, noise, pixel "
                           "spacing, bit depth); the manifest gets a center column (default 1: none)")
    add_n_jobs_option(demo)
    demo.set_defaults(handler=run_demo_data)

    busi = subparsers.add_parser("import-busi", help="US-only manifest from the BUSI folder, duplicates removed")
    busi.add_argument("busi_dir", help="the BUSI folder (with benign/ and malignant/)")
    busi.add_argument("out_csv", help="manifest to write (removed images go to <name>_removed.csv beside it)")
    busi.add_argument("--similarity", type=float, default=0.93,
                      help="gradient-thumbnail correlation for another frame of the same lesion")
    busi.add_argument("--mask-iou", type=float, default=0.7, help="mask overlap required with --similarity")
    busi.add_argument("--same-image", type=float, default=0.975,
                      help="correlation above which two images are the same picture whatever their masks")
    busi.add_argument("--keep-duplicates", action="store_true",
                      help="keep same-label duplicates under a shared group instead of removing them")
    busi.set_defaults(handler=run_import_busi)

    crop = subparsers.add_parser("crop", help="crop and cache every lesion ROI (NIfTI)")
    crop.add_argument("manifest", help="cohort CSV")
    crop.add_argument("--out", required=True, help="folder; crops go to OUT/roi/<mod>/<patient>/")
    add_roi_options(crop)
    add_n_jobs_option(crop)
    crop.set_defaults(handler=run_crop)
