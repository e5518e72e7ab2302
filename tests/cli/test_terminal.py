"""What `mmdlr run` shows: a bar and one line per stage; per-epoch and library logs only in RUN/logs/mmdlr.log
(and on the terminal with --verbose); with -q, warnings and the final summary only."""

from __future__ import annotations

import io
import logging
import re
from contextlib import redirect_stderr, redirect_stdout

import pandas as pd
import pytest

from mmdlr.cli.main import main
from mmdlr.pipeline.stages import STAGES
from mmdlr.terminal import configure_terminal

LIGHT = ["deep.backbone=efficientnet_lite0", "deep.max_epochs=2", "deep.spatial_size=[64,64]", "deep.baselines=[]",
         "classifiers=[lr]", "families=[radiomics,deep]", "inner_folds=2", "bootstrap.n=100",
         "report.gradcam_cases=1"]
LIBRARY_LINES = re.compile(r"Epoch\[\d+\]|Engine run|validation\.valid|Loading dataset|caching features|"
                           r"Logging file is set")


def shown(text: str) -> list[str]:
    """What stays on a terminal: of each line, the text after its last carriage return."""
    return [line.split("\r")[-1] for line in text.split("\n") if line.split("\r")[-1].strip()]


def run(flags: list[str]) -> tuple[str, str]:
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        assert main(flags) == 0, err.getvalue()[-2000:]
    return err.getvalue(), out.getvalue()


@pytest.fixture(scope="module")
def runs(run_cohort, tmp_path_factory):
    """The run folder, and stderr and stdout of a fresh run (US and MG of the shared cohort: two networks, so a
    second bundle run in the process is shown too) and of a -q rerun of its deep stage."""
    folder = tmp_path_factory.mktemp("terminal")
    cohort = pd.read_csv(run_cohort, dtype=str, keep_default_na=False)
    files = [f"{modality}_{kind}" for modality in ("us", "mg") for kind in ("image", "mask")]
    cohort = cohort.drop(columns=[column for column in cohort if column.startswith("mr_")])
    cohort[files] = cohort[files].map(lambda cell: str(run_cohort.parent / cell) if cell else "")
    cohort.to_csv(folder / "us_mg.csv", index=False)
    out = folder / "run"
    command = ["run", "--manifest", str(folder / "us_mg.csv"), "--out", str(out),
               *[p for s in LIGHT for p in ("--set", s)]]
    return out, run(command), run(["-q", *command, "--force", "deep"])


def stage_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if re.match(r"\w+ +(done: |up to date)", line)]


def noise(lines: list[str]) -> list[str]:
    """Lines a person should not see without --verbose: library logs and progress bars left behind."""
    return [line for line in lines if LIBRARY_LINES.search(line) or "%|" in line or "step [" in line]


def test_default_shows_one_line_per_stage_and_no_library_logs(runs):
    out, (err, std), _ = runs
    lines = shown(err)
    assert [line.split()[0] for line in stage_lines(lines)] == [s for s in STAGES if s != "baselines"], lines[:40]
    assert all(" done: " in line for line in stage_lines(lines))
    assert noise(lines) == []
    assert "report:" in std
    log = (out / "logs" / "mmdlr.log").read_text()
    assert re.search(r"Epoch\[2\] Metrics -- val_accuracy", log) and re.search(r"crop +done: \d+ rois", log)


def test_quiet_shows_neither_bars_nor_stage_lines(runs):
    _, _, (err, std) = runs
    lines = shown(err)
    assert stage_lines(lines) == [] and noise(lines) == [], lines[:40]
    assert "report:" in std


@pytest.mark.parametrize(("flags", "expected"), [({}, ["crop       done: 3 rois, 1.0 s", "a warning"]),
                                                  ({"quiet": True}, ["a warning"]),
                                                  ({"verbose": True}, ["INFO mmdlr.summary: crop       done: 3 rois, "
                                                                       "1.0 s", "INFO ignite.engine: Epoch[1] Complete",
                                                                       "WARNING pykwalify: a warning",
                                                                       "WARNING distributed.nanny: Restarting worker"])])
def test_verbosity_decides_what_the_terminal_shows(flags, expected):
    err = io.StringIO()
    with redirect_stderr(err):
        configure_terminal(**flags)
        logging.getLogger("mmdlr.summary").info("crop       done: 3 rois, 1.0 s")
        logging.getLogger("ignite.engine").info("Epoch[1] Complete")
        logging.getLogger("monai.bundle.workflows").warning("Logging file is set to False, skipping logging.")
        logging.getLogger("pykwalify").warning("a warning")
        logging.getLogger("distributed.nanny").warning("Restarting worker")  # a cluster's own: with -v only
    configure_terminal()
    assert err.getvalue().splitlines() == expected
