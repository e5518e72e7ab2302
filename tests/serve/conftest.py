"""Fixtures of the serving tests: the shared finished run's cohort, `mmdlr predict` on new patients, and one
real `mmdlr serve` process."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from mmdlr.cli.main import main

from .cases import MODALITIES, read_cohort, running_server

NEW_PATIENTS = 8


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The thread count `mmdlr serve` and `mmdlr predict` use, so in-process results are bit-identical."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def cohort(run_dir) -> pd.DataFrame:
    return read_cohort(run_dir)


@pytest.fixture(scope="session")
def new_manifest(cohort, tmp_path_factory):
    """Cohort patients as new ones (no label, split or group): complete ones and one without MG."""
    complete = cohort[(cohort[[f"{m}_image" for m in MODALITIES]] != "").all(axis=1)]
    without_mg = cohort[(cohort["mg_image"] == "") & (cohort["us_image"] != "")]
    table = pd.concat([complete.head(NEW_PATIENTS - 1), without_mg.head(1)])
    path = tmp_path_factory.mktemp("new") / "new_patients.csv"
    table.drop(columns=["label", "split", "group"]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def predict_csv(run_dir, new_manifest, tmp_path_factory) -> pd.DataFrame:
    """`mmdlr predict` of every model for the new patients."""
    out = tmp_path_factory.mktemp("predict") / "predictions.csv"
    previous = torch.get_num_threads()
    assert main(["-q", "predict", "--model-dir", str(run_dir), "--manifest", str(new_manifest),
                 "--out", str(out)]) == 0
    torch.set_num_threads(previous)
    return pd.read_csv(out, dtype={"patient_id": str})


@pytest.fixture(scope="session")
def server(run_dir, tmp_path_factory):
    """(base URL, process id) of `mmdlr serve` with the test token and --max-concurrent 4, one for every module
    that talks to a real server process; stopped at the end of the session."""
    with running_server(run_dir, tmp_path_factory.mktemp("server") / "server.log", "--max-concurrent", "4") as server:
        yield server
