"""`mmdlr radiomics`: crop (cached) and extract PyRadiomics features per modality."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmdlr.cli.data import add_n_jobs_option, add_roi_options, roi_settings


def run_radiomics(args: argparse.Namespace) -> int:
    from mmdlr.io.manifest import read_manifest
    from mmdlr.radiomics.extract import DEFAULT_PARAMS, extract_cohort
    from mmdlr.roi.cache import crop_cohort

    params = {"2d": args.params_2d or DEFAULT_PARAMS["2d"], "3d": args.params_3d or DEFAULT_PARAMS["3d"]}
    for dimension, path in params.items():
        if not Path(path).is_file():
            raise FileNotFoundError(f"--params-{dimension}: params file {path} not found "
                                    f"(default: {DEFAULT_PARAMS[dimension]})")
    index = crop_cohort(read_manifest(args.manifest), args.out, roi_settings(args), progress=not args.quiet,
                        n_jobs=args.n_jobs)
    written = extract_cohort(index, args.out, args.dimension, params,
                             n_jobs=args.n_jobs, backend=args.backend, progress=not args.quiet)
    for modality, path in written.items():
        print(f"{modality}: {path}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("radiomics", help="PyRadiomics features per modality (radiomics_<mod>.csv)")
    parser.add_argument("manifest", help="cohort CSV")
    parser.add_argument("--out", required=True, help="folder for roi/ and radiomics_<mod>.csv")
    parser.add_argument("--dimension", choices=("2d", "3d"), default="2d",
                        help="3d: volumetric modalities use their 3D ROI (default: largest slice)")
    parser.add_argument("--params-2d", help="PyRadiomics params file for 2D ROIs (default configs/radiomics_2d.yaml)")
    parser.add_argument("--params-3d", help="PyRadiomics params file for 3D ROIs (default configs/radiomics_3d.yaml)")
    add_n_jobs_option(parser)
    parser.add_argument("--backend", default="loky", choices=("loky", "threading", "dask"),
                        help="joblib backend; dask needs a running dask.distributed Client")
    add_roi_options(parser)
    parser.set_defaults(handler=run_radiomics)
