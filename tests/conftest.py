"""Shared fixtures: a small generated cohort and the real BUSI folder when present."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmdlr.synthetic import CohortSettings, generate_cohort

REPO = Path(__file__).resolve().parents[1]
BUSI_DIR = REPO.parent / "shared" / "data" / "busi"


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
