"""Scale-out: radiomics and the classifier grid on a real dask.distributed LocalCluster equal the local run."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
import pytest
from joblib import effective_n_jobs

import mmdlr.parallel
from mmdlr.analysis.config import ParallelConfig, config_from_dict
from mmdlr.analysis.runner import parallel_backend, run_analysis, run_parallel
from mmdlr.io.manifest import read_manifest
from mmdlr.parallel import dask_client, malloc_trim_threshold
from mmdlr.radiomics.extract import extract_cohort
from mmdlr.roi.cache import crop_cohort

GRID = {"classifiers": {"lr": {"C": [0.1, 1.0]}, "knn": {"n_neighbors": [5]}}, "bootstrap": {"n": 200},
        "inner_folds": 2, "families": ["radiomics"], "fusion": {"stacking": False}}


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as local:
        yield local.scheduler_address


@pytest.fixture(scope="module")
def local_features(small_cohort, tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """The small cohort's radiomics tables, cropped and extracted locally: (their folder, table by modality)."""
    folder = tmp_path_factory.mktemp("local")
    index = crop_cohort(read_manifest(small_cohort), folder, progress=False)
    return folder / "features", extract_cohort(index, folder / "features", progress=False)


def test_radiomics_on_dask_equals_local(cluster, small_cohort, local_features, tmp_path):
    dask_index = crop_cohort(read_manifest(small_cohort), tmp_path / "dask", progress=False)  # its own cache
    _, local = local_features
    with dask_client(cluster) as client:
        distributed = extract_cohort(dask_index, tmp_path / "dask", n_jobs=2, backend="dask", progress=False)
        assert len(client.scheduler_info()["workers"]) == 2
    for modality in local:
        pd.testing.assert_frame_equal(pd.read_csv(local[modality]), pd.read_csv(distributed[modality]))


def test_analysis_grid_on_dask_equals_local(cluster, local_features, tmp_path):
    features, _ = local_features
    local = run_analysis(features, tmp_path / "local",
                         config_from_dict(GRID | {"parallel": {"backend": "loky", "n_jobs": 2}}), progress=False)
    distributed = run_analysis(features, tmp_path / "dask",
                               config_from_dict(GRID | {"parallel": {"backend": "dask", "n_jobs": 2,
                                                                     "scheduler_address": cluster}}),
                               progress=False)
    for name in ("predictions.csv", "table_radiomics.csv"):
        assert (local.results_dir / name).read_bytes() == (distributed.results_dir / name).read_bytes(), name


def test_grid_tasks_run_their_own_joblib_calls_in_place(cluster):
    """A task's own joblib calls (LassoCV's path) run inside it, not back on the cluster as tasks of their own."""
    with parallel_backend(ParallelConfig(backend="dask", n_jobs=2, scheduler_address=cluster)):
        assert run_parallel(effective_n_jobs, [()] * 2, "probe", progress=False) == [1, 1]


def test_local_cluster_workers_keep_malloc_defaults_and_a_trimming_cluster_is_named(cluster, caplog, monkeypatch):
    """Dask's nannies set MALLOC_TRIM_THRESHOLD_ in their workers (freed memory returned at once, refaulted for the
    next array: radiomics 1.3 x slower); the local cluster mmdlr starts does not, and a cluster that does is named in
    a warning."""
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)  # set here by the fixture's nannies, as they spawn
    monkeypatch.setattr(mmdlr.parallel, "_warned_trimming", set())  # named once per process: earlier tests connected
    with dask_client(None, 2) as client:
        assert set(client.run(malloc_trim_threshold).values()) == {None}
    assert "MALLOC_TRIM_THRESHOLD_" not in caplog.text
    with dask_client(cluster) as client:  # a LocalCluster with Dask's defaults, started by the fixture
        assert set(client.run(malloc_trim_threshold).values()) == {"65536"}
    with dask_client(cluster):
        pass
    assert caplog.text.count("return freed memory") == 1
    assert f"the workers of the Dask cluster {cluster} return freed memory to the system at once " \
           "(MALLOC_TRIM_THRESHOLD_=65536), which made radiomics 1.3 times slower in mmdlr's benchmark: start them " \
           "with DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON=\"{'MALLOC_TRIM_THRESHOLD_': None}\"" in caplog.text


def test_local_cluster_workers_print_nothing_and_forward_their_records(caplog):
    """A local cluster's workers (mmdlr.parallel.dask_setup) send their log records, and the exceptions Python can
    only ignore (``__del__``), to this process's logging instead of printing them."""
    class RaisesWhenDeleted:  # defined here, so that the task is pickled by value (workers cannot import tests)
        def __del__(self):
            raise RuntimeError("deleted too late")

    def log_and_drop() -> None:
        logging.getLogger("distributed.worker").warning("from a task")
        RaisesWhenDeleted()

    def stderr_handlers() -> list[str]:
        return [type(h).__name__ for name in list(logging.root.manager.loggerDict) if name.startswith("distributed")
                for h in logging.getLogger(name).handlers if isinstance(h, logging.StreamHandler)]

    received: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = received.append
    logger = logging.getLogger("distributed.worker")
    logger.addHandler(handler)
    try:
        with dask_client(None, 1) as client:
            client.submit(log_and_drop).result()
            deadline = time.time() + 30
            while len(received) < 2 and time.time() < deadline:
                time.sleep(0.2)
            on_workers = client.run(stderr_handlers)
    finally:
        logger.removeHandler(handler)
    assert "has one worker thread, so its tasks run in this process instead: set parallel.n_jobs" in caplog.text
    messages = [record.getMessage() for record in received]
    assert "from a task" in messages, messages
    ignored = [record for record in received if "RaisesWhenDeleted" in record.getMessage()]
    assert ignored and "RuntimeError: deleted too late" in ignored[0].exc_text, messages  # its traceback, as text
    assert list(on_workers.values()) == [[]], on_workers  # nothing of distributed's writes to a worker's stderr
