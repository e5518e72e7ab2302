"""Scale-out: radiomics and the classifier grid on a real dask.distributed LocalCluster equal the local run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from joblib import effective_n_jobs

from mmdlr.analysis.config import ParallelConfig, config_from_dict
from mmdlr.analysis.runner import parallel_backend, run_analysis, run_parallel
from mmdlr.io.manifest import read_manifest
from mmdlr.parallel import dask_client
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
