"""`mmdlr radiomics`: crop (cached) and extract PyRadiomics features per modality."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmdlr.cli.data import add_roi_options, roi_settings
from mmdlr.io.manifest import read_manifest
from mmdlr.radiomics.extract import DEFAULT_PARAMS, extract_cohort
from mmdlr.roi.cache import crop_cohort


def run_radiomics(args: argparse.Namespace) -> int:
    for option, path in (("--params-2d", args.params_2d), ("--params-3d", args.params_3d)):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{option}: params file {path} not found (default: {DEFAULT_PARAMS[option[-2:]]})")
    index = crop_cohort(read_manifest(args.manifest), args.out, roi_settings(args), progress=not args.quiet)
    written = extract_cohort(index, args.out, args.dimension, {"2d": args.params_2d, "3d": args.params_3d},
                             n_jobs=args.n_jobs, backend=args.backend, progress=not args.quiet)
    for modality, path in written.items():
        print(f"{modality}: {path}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("radiomics", help="PyRadiomics features per modality (radiomics_<mod>.csv)")
    parser.add_argument("manifest")
    parser.add_argument("--out", required=True, help="folder for roi/ and radiomics_<mod>.csv")
    parser.add_argument("--dimension", choices=("2d", "3d"), default="2d",
                        help="3d: volumetric modalities use their 3D ROI (default: largest slice)")
    parser.add_argument("--params-2d", default=str(DEFAULT_PARAMS["2d"]))
    parser.add_argument("--params-3d", default=str(DEFAULT_PARAMS["3d"]))
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel patients (-1: all cores)")
    parser.add_argument("--backend", default="loky", choices=("loky", "threading", "dask"),
                        help="joblib backend; dask needs a running dask.distributed Client")
    add_roi_options(parser)
    parser.set_defaults(handler=run_radiomics)
