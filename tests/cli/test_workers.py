"""Worker processes (loky, a Dask LocalCluster) end with `mmdlr`, whether it is terminated or killed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil  # a dependency of dask.distributed
import pytest

LIGHT_RUN = ["deep.enabled=false", "deep.baselines=[]", "families=[radiomics]", "classifiers=[lr]",
             "inner_folds=2", "bootstrap.n=200", "radiomics.n_jobs=2"]


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    still = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                still.append(process)
        except psutil.NoSuchProcess:
            pass
    return still


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "signum"), [("loky", signal.SIGTERM), ("loky", signal.SIGKILL),
                                                 ("dask", signal.SIGTERM)])
def test_workers_do_not_outlive_mmdlr(run_cohort, tmp_path, backend, signum):
    overrides = LIGHT_RUN + (["parallel.backend=dask"] if backend == "dask" else [])
    command = [sys.executable, "-m", "mmdlr.cli.main", "-q", "run", "--manifest", str(run_cohort),
               "--out", str(tmp_path / "run"), *[part for item in overrides for part in ("--set", item)]]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        parent = psutil.Process(process.pid)
        deadline = time.time() + 300
        workers = []
        expected = 2  # loky workers, or the worker processes of the cluster's 2 nannies
        while len(workers) < expected and time.time() < deadline and process.poll() is None:  # radiomics stage
            time.sleep(0.2)
            workers = [child for child in parent.children(recursive=True) if "python" in child.name().lower()]
        assert len(workers) >= expected, process.poll() is None or process.communicate()[1][-3000:]
        time.sleep(3)  # past the cluster's start-up
        workers = alive(parent.children(recursive=True))
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    deadline = time.time() + 15
    while alive(workers) and time.time() < deadline:
        time.sleep(0.5)
    survivors = alive(workers)
    for survivor in survivors:
        survivor.kill()
    assert not survivors, [survivor.cmdline()[:4] for survivor in survivors]
    if signum == signal.SIGTERM:
        assert process.returncode == 128 + signal.SIGTERM
        assert err.splitlines() == ["mmdlr run: interrupted by SIGTERM"]  # nothing from the workers
    else:
        assert process.returncode == -signal.SIGKILL
