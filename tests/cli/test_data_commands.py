"""The data commands end to end through `mmdlr` (exit codes and messages)."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from mmdlr.cli.main import main


def test_demo_data_validate_crop(tmp_path, capsys):
    assert main(["-q", "demo-data", str(tmp_path / "c"), "--patients", "8", "--seed", "2"]) == 0
    manifest = tmp_path / "c" / "manifest.csv"
    assert main(["-q", "validate", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "mr" in out and "3D" in out
    assert main(["-q", "crop", str(manifest), "--out", str(tmp_path / "o"), "--margin", "5",
                 "--margin-unit", "percent"]) == 0
    index = pd.read_csv(tmp_path / "o" / "roi" / "roi_index.csv")
    assert set(index["modality"]) == {"us", "mg", "mr"}


def test_validate_fails_with_problems_on_stderr(tmp_path, capsys):
    assert main(["-q", "demo-data", str(tmp_path / "c"), "--patients", "6"]) == 0
    manifest = tmp_path / "c" / "manifest.csv"
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    table.loc[0, "label"] = "unknown"
    table.loc[1, "patient_id"] = table.loc[2, "patient_id"]
    table.to_csv(manifest, index=False)
    assert main(["-q", "validate", str(manifest)]) == 1
    err = capsys.readouterr().err
    assert "2 problem(s)" in err and "bad label 'unknown'" in err and "duplicate patient_id" in err


def test_console_script_reports_errors_with_exit_code(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mmdlr.cli.main", "crop", str(tmp_path / "none.csv"),
                             "--out", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "none.csv not found" in result.stderr


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_n_jobs_is_checked_where_it_is_given(value, capsys):
    with pytest.raises(SystemExit):
        main(["-q", "crop", "m.csv", "--out", "o", "--n-jobs", value])
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("mmdlr crop: error: argument --n-jobs: ")
