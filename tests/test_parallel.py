"""Worker processes: what a caller of mmdlr.parallel.ordered_results sees when the system ends a worker."""

from __future__ import annotations

import signal
import time

import joblib
import pytest

from mmdlr.errors import WorkerKilledError
from mmdlr.parallel import ordered_results


def test_a_worker_the_system_ends_is_one_error_naming_the_cases_it_may_have_been_working_on():
    names = [f"us: patient P{index}" for index in range(12)]
    jobs = [joblib.delayed(time.sleep)(0.2) for _ in range(12)]
    jobs[3] = joblib.delayed(signal.raise_signal)(signal.SIGKILL)  # what the out-of-memory killer does
    with joblib.parallel_config(backend="loky", n_jobs=2), pytest.raises(WorkerKilledError) as error:
        ordered_results(jobs, "crop ROIs", "roi", progress=False, names=names)
    suspects = error.value.suspects
    assert "us: patient P3" in suspects and len(suspects) <= 4  # after the last result, 2 per worker ahead
    assert suspects == names[names.index(suspects[0]):][:len(suspects)]
    message = str(error.value)
    assert message.startswith("crop ROIs: the system ended a worker process (exit {SIGKILL(-9)}") and "\n" not in message
    assert ", ".join(suspects) in message
