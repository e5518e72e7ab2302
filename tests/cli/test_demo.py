"""`mmdlr demo`: a generated cohort under OUT/cohort and `mmdlr run` on it, with the demo's settings, under OUT/run.

The run itself is `mmdlr run`'s, tested in tests/pipeline; here `run_pipeline` is a spy that records what the
demo hands it and returns the shared finished run, so the demo's wiring is tested without a second full run.
"""

from __future__ import annotations

import pandas as pd

from mmdlr.analysis.config import PIPELINE_SECTIONS
from mmdlr.cli.main import main
from mmdlr.cli.pipeline import DEMO_OVERRIDES
from mmdlr.pipeline.config import parse_override

OVERRIDE = "deep.max_epochs=1"  # a --set wins over the demo's own value of the same key


def setting(config, key: list[str]):
    """``key``'s value in a RunConfig: a pipeline section's, or the analysis config's."""
    values = {key[0]: config.section(key[0])} if key[0] in PIPELINE_SECTIONS else config.analysis.to_dict()
    for part in key:
        values = values[part]
    return values


def test_demo_runs_a_generated_cohort_with_the_demo_settings(finished_run, tmp_path, capsys, monkeypatch):
    calls = []

    def spy(manifest, config, out, force=(), progress=True):
        calls.append((manifest, config, out))
        return finished_run[0]

    monkeypatch.setattr("mmdlr.pipeline.run.run_pipeline", spy)
    assert main(["-q", "demo", "--out", str(tmp_path), "--patients", "12", "--seed", "3", "--set", OVERRIDE]) == 0
    [(manifest, config, out)] = calls
    assert manifest == tmp_path / "cohort" / "manifest.csv" and out == tmp_path / "run"
    assert len(pd.read_csv(manifest)) == 12
    for key, value in map(parse_override, DEMO_OVERRIDES):
        actual = setting(config, key)  # a list of classifiers becomes a mapping to their default grids
        assert (list(actual) if isinstance(value, list) and isinstance(actual, dict) else actual) == value, key
    assert setting(config, ["deep", "max_epochs"]) == 1
    summary = capsys.readouterr().out
    assert "best radiomics" in summary and "best deep" in summary and "analysis" in summary
