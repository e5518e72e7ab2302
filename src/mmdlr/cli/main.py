"""`mmdlr` entry point: each stage module registers its subcommands.

Errors: an anticipated one (:class:`mmdlr.errors.UserError`, ``ValueError``, ``OSError``, a YAML
syntax error; also when MONAI re-raised it as a ``RuntimeError``) prints one line, ``mmdlr <command>:
error: <message>``, and exits 2; any other exception is a bug or an environment failure we did not
foresee: one line with its type and message, exit 1. ``--debug`` prints the traceback before that line.
SIGINT, SIGTERM and SIGHUP unwind the stack (joblib stops its workers, Dask clients close their
clusters), print one line and exit 128 + the signal number (130 for Ctrl-C); a closed stdout pipe exits
141 silently, as a shell command killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import traceback
import warnings

import yaml

from mmdlr import __version__
from mmdlr.errors import ManifestError, UserError, causes, find_cause
from mmdlr.terminal import configure_terminal

COMMAND_MODULES = ("mmdlr.cli.data", "mmdlr.cli.radiomics", "mmdlr.cli.analysis", "mmdlr.cli.pipeline",
                   "mmdlr.cli.serve", "mmdlr.cli.ibsi", "mmdlr.cli.evaluate")
ANTICIPATED = (UserError, ValueError, OSError, yaml.YAMLError)
SHOWN_PROBLEMS = 5  # of a manifest's problems on the error line; `mmdlr validate` lists every one


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmdlr", description=__doc__.split(":")[0] + ": multimodal "
                                     "deep-learning radiomics for benign vs malignant breast tumours.")
    parser.add_argument("--version", action="version", version=f"mmdlr {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="warnings and the final summary only (no progress bars, no stage lines)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show every log line (per-epoch metrics, library messages; a run writes them to "
                             "RUN/logs/mmdlr.log in any case) and library warnings (small-fold and convergence "
                             "notices from scikit-learn, ...)")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an error (without it: one line, exit 2 for an input, config "
                             "or environment problem, exit 1 for anything else)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def error_line(error: BaseException) -> tuple[str, int]:
    """The one-line message for ``error`` and the exit code: 2 when anticipated, else 1."""
    anticipated = find_cause(error, ANTICIPATED)
    if anticipated is None:
        # an error raised in a loky worker has that worker's traceback (as text) for its cause: --debug prints it
        innermost = [cause for cause in causes(error) if type(cause).__name__ != "_RemoteTraceback"][-1]
        return f"{type(innermost).__name__}: {_one_line(innermost)} (run with --debug for the traceback)", 1
    return _one_line(anticipated), 2


def _one_line(error: BaseException) -> str:
    if isinstance(error, ManifestError):
        shown = error.problems[:SHOWN_PROBLEMS]
        more = len(error.problems) - len(shown)
        return (f"manifest has {len(error.problems)} problem(s): " + "; ".join(shown)
                + (f"; and {more} more (`mmdlr validate MANIFEST` lists every one)" if more else ""))
    if isinstance(error, OSError) and error.strerror and error.filename:
        return f"{error.filename}: {error.strerror}"
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from mmdlr.parallel import Terminated, signals_interrupt, workers_exit_with_parent  # joblib: not for --help

    configure_terminal(args.quiet, args.verbose)
    if not args.verbose:
        # Worker processes (joblib, dask) inherit PYTHONWARNINGS; the filters here cover this process.
        quiet = "ignore::UserWarning,ignore::RuntimeWarning,ignore::FutureWarning"
        if quiet not in os.environ.get("PYTHONWARNINGS", ""):
            os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), quiet]))
        for category in (UserWarning, RuntimeWarning, FutureWarning):
            warnings.simplefilter("ignore", category)
    workers_exit_with_parent()
    try:
        with signals_interrupt():
            return int(args.handler(args) or 0)
    except KeyboardInterrupt as interrupt:
        signum = interrupt.signum if isinstance(interrupt, Terminated) else signal.SIGINT
        print(f"mmdlr {args.command}: interrupted by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum
    except BrokenPipeError:  # the reader of stdout stopped (`mmdlr crop ... | head`): stop quietly, as `cat` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python flushes stdout at exit
        return 128 + signal.SIGPIPE
    except Exception as error:  # noqa: BLE001 - every error ends as one line (--debug: with the traceback)
        if args.debug:
            traceback.print_exc()
        message, code = error_line(error)
        print(f"mmdlr {args.command}: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
