"""`mmdlr demo`: a generated cohort under OUT/cohort and `mmdlr run` on it, with the demo's settings, under OUT/run."""

from __future__ import annotations

import json

import pandas as pd

from mmdlr.cli.main import main
from mmdlr.cli.pipeline import DEMO_OVERRIDES
from mmdlr.pipeline.config import parse_override

# Only to keep the test small; each --set wins over the demo's own value of the same key.
SMALL = ["deep.max_epochs=1", "deep.spatial_size=[64,64]", "deep.baselines=[]", "classifiers={lr: {C: [1.0]}}",
         "inner_folds=2", "nested_cv.outer_folds=3", "families=[radiomics,deep]", "bootstrap.n=100",
         "report.gradcam_cases=1"]


def setting(config: dict, key: list[str]):
    """``key``'s value in provenance.json's config, where the analysis keys sit under ``analysis``."""
    config = config if key[0] in config else config["analysis"]
    for part in key:
        config = config[part]
    return config


def test_demo_runs_a_generated_cohort_with_the_demo_settings(tmp_path, capsys):
    flags = [part for override in SMALL for part in ("--set", override)]
    assert main(["-q", "demo", "--out", str(tmp_path), "--patients", "36", "--seed", "3", *flags]) == 0
    assert len(pd.read_csv(tmp_path / "cohort" / "manifest.csv")) == 36
    config = json.loads((tmp_path / "run" / "provenance.json").read_text())["config"]
    overridden = {".".join(parse_override(text)[0]) for text in SMALL}
    for key, value in map(parse_override, DEMO_OVERRIDES):
        if ".".join(key) not in overridden:
            assert setting(config, key) == value, key
    assert setting(config, ["classifiers"]) == {"lr": {"C": [1.0]}} and setting(config, ["deep", "max_epochs"]) == 1
    summary = capsys.readouterr().out
    assert "best radiomics" in summary and "best deep" in summary and (tmp_path / "run" / "report.html").is_file()
