"""Shared fixtures: a small generated cohort and the real BUSI folder when present."""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import pytest

from mmdlr.synthetic import CohortSettings, generate_cohort

REPO = Path(__file__).resolve().parents[1]
BUSI_DIR = REPO.parent / "shared" / "data" / "busi"


def pytest_collection_modifyitems(config, items):
    """For pytest-xdist's ``--dist loadgroup`` (``make test`` runs two workers): every test that uses the shared
    finished run on one worker, so the run is built once, and each other module's tests together, so a module's
    fixtures are built once."""
    for item in items:
        group = "finished_run" if "finished_run" in item.fixturenames else item.nodeid.partition("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory) -> Path:
    """A 16-patient synthetic cohort (US PNG, MG DICOM, MR NIfTI); returns its manifest path."""
    return generate_cohort(tmp_path_factory.mktemp("cohort") / "cohort",
                           CohortSettings(patients=16, seed=7), progress=False)


@pytest.fixture(scope="session")
def busi_dir() -> Path:
    if not (BUSI_DIR / "benign").is_dir():
        pytest.skip(f"BUSI folder not found at {BUSI_DIR}")
    return BUSI_DIR


# A small but complete `mmdlr run`: every stage and every fusion strategy, on a 40-patient cohort.
FAST_RUN = ["deep.backbone=efficientnet_lite0", "deep.max_epochs=3", "deep.spatial_size=[64,64]",
            "deep.batch_size=8", "classifiers={lr: {C: [1.0]}, rf: {max_depth: [3], n_estimators: [25]}}",
            "bootstrap.n=200", "inner_folds=2", "report.gradcam_cases=1", "deep.baselines=[densenet121]",
            "deep.baseline_weights=none"]


@pytest.fixture(scope="session")
def fast_run() -> list[str]:
    """Config overrides for a quick but complete run."""
    return list(FAST_RUN)


@pytest.fixture(scope="session")
def run_cohort(tmp_path_factory) -> Path:
    return generate_cohort(tmp_path_factory.mktemp("run_cohort") / "c",
                           CohortSettings(patients=40, seed=21, missing_rate=0.05), progress=False)


@pytest.fixture(scope="session")
def finished_run(run_cohort, tmp_path_factory):
    """(RunResult, RunConfig) of `mmdlr run` with configs/paper.yaml and FAST_RUN overrides."""
    from mmdlr.paths import CONFIG_DIR
    from mmdlr.pipeline.config import load_run_config
    from mmdlr.pipeline.run import run_pipeline

    config = load_run_config(CONFIG_DIR / "paper.yaml", FAST_RUN)
    return run_pipeline(run_cohort, config, tmp_path_factory.mktemp("run"), progress=False), config


@pytest.fixture(scope="session")
def run_dir(finished_run) -> Path:
    return finished_run[0].out_dir


@pytest.fixture(scope="session")
def predictor(run_dir):
    """The Predictor of the shared finished run."""
    from mmdlr.serve import Predictor

    return Predictor.from_run_dir(run_dir)


@pytest.fixture
def shared_predictor(predictor, monkeypatch):
    """`mmdlr predict`, `serve` and `evaluate` in this test get the session's Predictor for the shared run folder
    instead of loading its saved models again (~20 s each); other tests load it through the command."""
    from mmdlr.serve import Predictor

    load = Predictor.from_run_dir

    def from_run_dir(folder):
        return predictor if Path(folder).resolve() == predictor.folder.path else load(folder)

    monkeypatch.setattr(Predictor, "from_run_dir", from_run_dir)
    return predictor


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty torch hub cache and no network."""
    import torch

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, *args, **kwargs):
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
