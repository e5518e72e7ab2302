"""`mmdlr` entry point: each stage module registers its subcommands."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings

from mmdlr import __version__
from mmdlr.errors import CaseError, ManifestError

COMMAND_MODULES = ("mmdlr.cli.data", "mmdlr.cli.radiomics", "mmdlr.cli.analysis", "mmdlr.cli.pipeline",
                   "mmdlr.cli.serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmdlr", description=__doc__.split(":")[0] + ": multimodal "
                                     "deep-learning radiomics for benign vs malignant breast tumours.")
    parser.add_argument("--version", action="version", version=f"mmdlr {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show library warnings (small-fold and convergence notices from scikit-learn, ...)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    if not args.verbose:
        # Worker processes (joblib, dask) inherit PYTHONWARNINGS; the filters here cover this process.
        quiet = "ignore::UserWarning,ignore::RuntimeWarning,ignore::FutureWarning"
        if quiet not in os.environ.get("PYTHONWARNINGS", ""):
            os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), quiet]))
        for category in (UserWarning, RuntimeWarning, FutureWarning):
            warnings.simplefilter("ignore", category)
    try:
        return int(args.handler(args) or 0)
    except (CaseError, ManifestError, ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"mmdlr {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
