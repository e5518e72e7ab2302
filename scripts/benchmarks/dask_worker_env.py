#!/usr/bin/env python
"""PyRadiomics on BUSI ROIs in loky workers and in Dask workers, with and without the ``MALLOC_TRIM_THRESHOLD_``
(65536) that Dask's nannies set in their workers' environment.

Variants, ``--rounds`` times in this order, each on the same cropped ROIs with the per-ROI feature cache deleted:

``loky``                 ``extract_cohort(n_jobs=2)`` (what ``mmdlr run`` does without a scheduler)
``loky, trimming``       the same with ``MALLOC_TRIM_THRESHOLD_=65536`` in the workers' environment
``cluster``              a ``dask scheduler`` + ``dask worker --nworkers 2 --nthreads 1`` started as docs/benchmarks.md
                         section 7 advises (``DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON`` drops the variable)
``cluster, Dask's environment``  the same cluster with Dask's default worker environment

Recorded: wall seconds (loky's includes starting its workers, as in ``mmdlr run``; the cluster is started before),
and user and system CPU seconds of the worker processes (on the cluster with its scheduler and nannies). Writes
``docs/benchmarks/dask_worker_env.csv`` (benchmark, variant, value, unit).

    .venv/bin/python scripts/benchmarks/dask_worker_env.py                 # 616 BUSI images, 2 rounds (~4 min)
    .venv/bin/python scripts/benchmarks/dask_worker_env.py --images 60 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import cloudpickle
import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dask_cluster  # noqa: E402
from analysis_speed import load  # noqa: E402
from speed import busi_manifest  # noqa: E402

cloudpickle.register_pickle_by_value(dask_cluster)  # its scheduler plugin, which the scheduler cannot import

REPO = Path(__file__).resolve().parents[2]
VARIANTS = ("loky", "loky, trimming", "cluster", "cluster, Dask's environment")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busi", type=Path, default=Path("/work/shared/data/busi"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmdlr-bench/dask_worker_env"))
    parser.add_argument("--csv", type=Path, default=REPO / "docs/benchmarks/dask_worker_env.csv")
    parser.add_argument("--images", type=int, default=616, help="BUSI images (616: all, duplicates removed)")
    parser.add_argument("--rounds", type=int, default=2)
    return parser.parse_args(argv)


def worker_cpu(processes: list[psutil.Process]) -> dict[int, tuple[float, float]]:
    """(user, system) CPU seconds by pid of ``processes`` and their descendants."""
    cpu = {}
    for member in {m.pid: m for root in processes for m in [root, *root.children(recursive=True)]}.values():
        try:
            times = member.cpu_times()
        except psutil.Error:
            continue
        cpu[member.pid] = (times.user, times.system)
    return cpu


def extract(index: pd.DataFrame, out: Path, variant: str) -> tuple[float, float, float]:
    """One extraction: (wall s, user and system CPU s of the worker processes)."""
    from dask.distributed import Client
    from joblib.externals.loky import get_reusable_executor

    from mmdlr.radiomics.extract import extract_cohort

    for cached in (out / "roi").rglob("radiomics_*.json"):
        cached.unlink()
    trimming = variant == "loky, trimming"
    if trimming:
        os.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"  # the loky workers started below inherit it
    try:
        get_reusable_executor().shutdown(wait=True)  # fresh loky workers, with this environment
        on_cluster = variant.startswith("cluster")
        cluster = (dask_cluster.dask_cluster(2, out, dask_environ="Dask" in variant) if on_cluster
                   else nullcontext(("", [])))
        with cluster as (address, processes):
            with Client(address) if on_cluster else nullcontext():
                roots = processes or [psutil.Process()]
                before, start = worker_cpu(roots), time.perf_counter()
                extract_cohort(index, out, "2d", n_jobs=2, backend="dask" if on_cluster else "loky", progress=False)
                wall, after = time.perf_counter() - start, worker_cpu(roots)
    finally:
        os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        get_reusable_executor().shutdown(wait=True)
    this = os.getpid()
    user = sum(after[pid][0] - before.get(pid, (0, 0))[0] for pid in after if pid != this)
    system = sum(after[pid][1] - before.get(pid, (0, 0))[1] for pid in after if pid != this)
    return wall, user, system


def main(argv=None) -> None:
    args = parse_args(argv)
    manifest = busi_manifest(argparse.Namespace(work=args.work, busi=args.busi), args.images, f"busi_{args.images}")
    out = args.work / f"rois_{args.images}"
    if not (out / "roi" / "roi_index.csv").is_file():
        subprocess.run([sys.executable, "-m", "mmdlr.cli.main", "-q", "crop", str(manifest), "--out", str(out)],
                       check=True)
    index = pd.read_csv(out / "roi" / "roi_index.csv", dtype={"patient_id": str, "group": str, "split": str},
                        keep_default_na=False)
    setting = f"{len(index)} BUSI ROIs, 2D, 2 workers"
    rows = [{"benchmark": "dask_worker_env", "variant": f"load_1min at start ({setting})", "value": load(),
             "unit": "load"}]
    for round_number in range(1, args.rounds + 1):
        for variant in VARIANTS:
            wall, user, system = extract(index, out, variant)
            print(f"round {round_number}, {variant}: {wall:.1f} s wall, workers {user:.1f} s user, {system:.1f} s "
                  "system", flush=True)
            for value, unit in ((wall, "s wall"), (user, "CPU s user, worker processes"),
                                (system, "CPU s system, worker processes")):
                rows.append({"benchmark": "dask_worker_env", "variant": f"{variant}, round {round_number} ({setting})",
                             "value": round(value, 2), "unit": unit})
    rows.append({"benchmark": "dask_worker_env", "variant": f"load_1min at end ({setting})", "value": load(),
                 "unit": "load"})
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.csv, index=False)
    print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
