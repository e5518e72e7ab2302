"""`mmdlr` entry point: each stage module registers its subcommands."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mmdlr import __version__
from mmdlr.errors import CaseError, ManifestError

COMMAND_MODULES = ("mmdlr.cli.data", "mmdlr.cli.radiomics", "mmdlr.cli.analysis", "mmdlr.cli.pipeline")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmdlr", description=__doc__.split(":")[0] + ": multimodal "
                                     "deep-learning radiomics for benign vs malignant breast tumours.")
    parser.add_argument("--version", action="version", version=f"mmdlr {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        return int(args.handler(args) or 0)
    except (CaseError, ManifestError, FileNotFoundError, FileExistsError) as error:
        print(f"mmdlr {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
