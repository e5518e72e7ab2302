"""Errors a user can act on: one line `mmdlr <command>: error: ...`, exit 2, no traceback (--debug shows it).

Each case of issue 11 section 4 through the real command line; a run refused by the preflight writes
nothing under --out.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mmdlr.cli import data as data_commands
from mmdlr.cli.main import error_line, main
from mmdlr.errors import CaseError
from mmdlr.paths import CONFIG_DIR

OFFLINE_SAFE = ["--set", "deep.backbone=efficientnet_lite0", "--set", "deep.baselines=[]"]


def error_of(capsys, command: str) -> str:
    """The single stderr line, checked to be `mmdlr <command>: error: ...`."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"mmdlr {command}: error: "), lines[0]
    return lines[0]


def cohort_subset(manifest: Path, rows: list[int], folder: Path, drop=("split",)) -> Path:
    """Some patients of a generated cohort as a new manifest with absolute paths."""
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False).iloc[rows]
    for column in [c for c in table if c.endswith(("_image", "_mask"))]:
        table[column] = [str(manifest.parent / cell) if cell else "" for cell in table[column]]
    folder.mkdir(parents=True, exist_ok=True)
    table.drop(columns=[c for c in drop if c in table]).to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


def test_default_config_offline_is_one_line_with_file_cache_and_alternatives(run_cohort, tmp_path, offline, capsys):
    out = tmp_path / "run"
    assert main(["-q", "run", "--manifest", str(run_cohort), "--out", str(out)]) == 2
    line = error_of(capsys, "run")
    assert "ImageNet weights not available offline: resnet50-0676ba61.pth (deep.weights)" in line
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in line
    assert "to a local checkpoint file or none" in line and "deep.backbone=efficientnet_lite0" in line
    assert not out.exists()  # refused before any stage ran


def test_three_patients_pass_validate_but_not_run(small_cohort, tmp_path, capsys):
    table = pd.read_csv(small_cohort, dtype=str, keep_default_na=False)
    rows = [*table.index[table["label"] == "benign"][:1], *table.index[table["label"] == "malignant"][:2]]
    manifest = cohort_subset(small_cohort, rows, tmp_path / "three")
    assert main(["-q", "validate", str(manifest)]) == 0
    capsys.readouterr()
    assert main(["-q", "run", "--manifest", str(manifest), "--out", str(tmp_path / "run"), *OFFLINE_SAFE]) == 2
    line = error_of(capsys, "run")
    assert "too few patients: holdout needs at least 10 benign and 10 malignant" in line
    assert "found 1 benign and 2 malignant" in line
    assert not (tmp_path / "run").exists()
    # `validate --config` runs the same checks and lists them with the manifest's problems
    assert main(["-q", "validate", str(manifest), "--config", str(CONFIG_DIR / "paper.yaml"), *OFFLINE_SAFE]) == 1
    err = capsys.readouterr().err
    assert "1 problem(s)" in err and "found 1 benign and 2 malignant" in err


def test_eight_patients_under_paper_yaml_say_how_many_are_needed(small_cohort, tmp_path, capsys):
    manifest = cohort_subset(small_cohort, list(range(8)), tmp_path / "eight")
    labels = pd.read_csv(manifest)["label"].value_counts()
    assert main(["-q", "run", "--manifest", str(manifest), "--out", str(tmp_path / "run"),
                 "--config", str(CONFIG_DIR / "paper.yaml"), *OFFLINE_SAFE]) == 2
    line = error_of(capsys, "run")
    assert f"found {labels.get('benign', 0)} benign and {labels.get('malignant', 0)} malignant" in line
    assert "needs at least 10 benign and 10 malignant" in line and "n_splits" not in line


def test_output_folder_that_cannot_be_written(run_cohort, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" / "run"
    assert main(["-q", "run", "--manifest", str(run_cohort), "--out", str(out), *OFFLINE_SAFE]) == 2
    assert error_of(capsys, "run").endswith(f"output folder {out}: {tmp_path / 'file'} is a file, not a folder; "
                                            "choose another --out")
    # a command without a preflight reports the OSError itself, in one line
    assert main(["-q", "crop", str(run_cohort), "--out", str(out)]) == 2
    line = error_of(capsys, "crop")
    assert line.startswith(f"mmdlr crop: error: {out / 'roi'}") and line.endswith(": Not a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0555 folder (the case above covers root)")
def test_read_only_output_folder(run_cohort, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert main(["-q", "run", "--manifest", str(run_cohort), "--out", str(locked), *OFFLINE_SAFE]) == 2
    assert "cannot be written (Permission denied" in error_of(capsys, "run")


@pytest.mark.parametrize("command", [["run", "--manifest", "m.csv", "--out", "o"],
                                     ["analyze", "--features", "f", "--out", "o"], ["validate", "m.csv"]])
def test_missing_config_file(command, tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main(["-q", *command, "--config", str(missing)]) == 2
    assert error_of(capsys, command[0]).endswith(f"config file {missing} not found (mmdlr ships "
                                                 f"{CONFIG_DIR / 'paper.yaml'} and "
                                                 f"{CONFIG_DIR / 'nested_cv.yaml'})")


def test_invalid_yaml_config_is_one_line(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("protocol: [holdout\n")
    assert main(["-q", "run", "--manifest", "m.csv", "--out", "o", "--config", str(tmp_path / "bad.yaml")]) == 2
    assert "bad.yaml" in error_of(capsys, "run")


def test_unexpected_error_is_one_line_exit_1_and_debug_shows_the_traceback(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("something\nwe did not foresee") from KeyError("inner detail")

    monkeypatch.setattr(data_commands, "run_crop", broken)
    assert main(["-q", "crop", "m.csv", "--out", "o"]) == 1
    assert error_of(capsys, "crop") == ("mmdlr crop: error: KeyError: 'inner detail' "
                                        "(run with --debug for the traceback)")
    assert main(["-q", "--debug", "crop", "m.csv", "--out", "o"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and 'raise RuntimeError("something' in err
    assert err.strip().splitlines()[-1].startswith("mmdlr crop: error: KeyError")


def test_keyboard_interrupt_exits_130_with_one_line(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(data_commands, "run_crop", interrupted)
    assert main(["-q", "crop", "m.csv", "--out", "o"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["mmdlr crop: interrupted by SIGINT"]


def test_errors_monai_wraps_are_surfaced(small_cohort, tmp_path):
    """The bundle's config parser re-raises our errors as RuntimeError chains; the line shows ours."""
    from mmdlr.pipeline.bundle import run_bundle_config

    table = pd.read_csv(small_cohort, dtype=str, keep_default_na=False)
    rows = [*table.index[(table["label"] == "benign") & (table["us_image"] != "")][:1],
            *table.index[(table["label"] == "malignant") & (table["us_image"] != "")][:3]]
    manifest = cohort_subset(small_cohort, rows, tmp_path / "few")
    with pytest.raises(RuntimeError) as raised:
        run_bundle_config("train", "train", manifest=str(manifest), modality="us", output_dir=str(tmp_path / "b"),
                          backbone="efficientnet_lite0", weights="none", max_epochs=1)
    assert type(raised.value) is RuntimeError  # MONAI's wrapper, not our error
    message, code = error_line(raised.value)
    assert code == 2
    assert message == ("need at least 2 benign and 2 malignant development cases for a train/validation split, "
                       "have 1 benign and 3 malignant")
    wrapped = RuntimeError("Failed to evaluate ConfigExpression")
    wrapped.__cause__ = CaseError("mask is empty", "P001", "/data/P001_mask.png")
    assert error_line(wrapped) == ("patient P001, file /data/P001_mask.png: mask is empty", 2)


def test_an_unforeseen_error_in_a_worker_process_reads_as_in_this_process():
    """loky hands a worker's error back with the worker's traceback as its cause; the line shows the error."""
    import operator

    import joblib

    lines = []
    for n_jobs in (1, 2):
        with pytest.raises(ZeroDivisionError) as raised:
            joblib.Parallel(n_jobs=n_jobs)(joblib.delayed(operator.truediv)(1, 0) for _ in range(2))
        lines.append(error_line(raised.value))
    assert lines == [("ZeroDivisionError: division by zero (run with --debug for the traceback)", 1)] * 2


def test_console_script_prints_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mmdlr.cli.main", "run", "--manifest", str(tmp_path / "m.csv"),
                             "--out", str(tmp_path / "o"), "--config", str(tmp_path / "none.yaml")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"mmdlr run: error: config file {tmp_path / 'none.yaml'} not found (mmdlr ships "
        f"{CONFIG_DIR / 'paper.yaml'} and {CONFIG_DIR / 'nested_cv.yaml'})"]


def test_a_closed_stdout_pipe_ends_quietly_as_a_shell_command_does(tmp_path):
    """`mmdlr demo-data ... | head -c 0`: the reader has gone before mmdlr prints; no error line, exit 141."""
    process = subprocess.Popen([sys.executable, "-m", "mmdlr.cli.main", "-q", "demo-data", str(tmp_path / "c"),
                                "--patients", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait() == 141 and stderr == ""
    assert (tmp_path / "c" / "manifest.csv").is_file()
