"""IBSI 1 compliance on the IBSI digital phantom: the table `mmdlr ibsi` writes, the expectations in
ibsi_map.csv it must meet, the table in docs/radiomics.md, and the settings stated in IBSI terms."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from mmdlr.cli.main import main
from mmdlr.io.manifest import Manifest
from mmdlr.paths import CONFIG_DIR, REPO_ROOT
from mmdlr.pipeline.config import run_config_from_dict
from mmdlr.radiomics.ibsi import (PRESETS, extraction_settings, ibsi_features, phantom_params, read_map,
                                  read_reference, within_tolerance)
from mmdlr.report.protocol import protocol_items

IBSI_DIR = REPO_ROOT.parent / "shared" / "data" / "ibsi"
DOCS = REPO_ROOT / "docs" / "radiomics.md"
DOCS_BEGIN, DOCS_END = "<!-- ibsi-compliance:begin -->\n", "<!-- ibsi-compliance:end -->"


@pytest.fixture(scope="module")
def phantom_run(tmp_path_factory) -> Path:
    if not (IBSI_DIR / "phantom.nii.gz").is_file():
        pytest.skip(f"IBSI digital phantom not found at {IBSI_DIR}")
    out = tmp_path_factory.mktemp("ibsi")
    assert main(["ibsi", str(IBSI_DIR), "--out", str(out)]) == 0  # 1: a match differs from ibsi_map.csv
    return out


def _table(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "ibsi_compliance.csv", keep_default_na=False,
                       converters={c: lambda s: float(s) if s else float("nan")
                                   for c in ("reference", "tolerance", "value")})


@pytest.mark.slow
def test_every_feature_expected_compliant_is_within_tolerance_and_every_deviation_is_real(phantom_run):
    table = _table(phantom_run)
    assert list(table["tag"]) == list(read_reference(IBSI_DIR)["tag"])
    expected = read_map().set_index("ibsi_feature")["compliant"]
    assert (table["expected"].to_numpy() == expected.loc[ibsi_features(table["tag"])].to_numpy()).all()
    compliant = table[table["expected"] == "yes"]
    deviating = table[table["expected"] == "no"]
    assert len(compliant) > 300 and set(deviating["tag"]) == {"morph_pca_min_axis", "morph_pca_least_axis"}
    for row in compliant.itertuples():  # reported to 3 significant digits, so compared at 3
        assert abs(float(f"{row.value:.3g}") - row.reference) <= row.tolerance + 1e-9, row.tag
    for row in deviating.itertuples():
        assert abs(float(f"{row.value:.3g}") - row.reference) > row.tolerance, row.tag
    absent = table[table["pyradiomics_feature"] == ""]
    assert absent["value"].isna().all() and (absent["reason"] != "").all()
    assert (table.loc[table["reference"].isna(), "match"] == "").all()


@pytest.mark.slow
def test_kurtosis_is_converted_to_ibsi_excess_kurtosis(phantom_run):
    row = _table(phantom_run).set_index("tag").loc["stat_kurt"]
    assert row["pyradiomics_feature"] == "firstorder_Kurtosis" and row["value"] == pytest.approx(2.64538 - 3, abs=1e-4)


@pytest.mark.slow
def test_docs_table_is_the_measured_one(phantom_run):
    docs = DOCS.read_text()
    assert DOCS_BEGIN in docs and DOCS_END in docs, f"{DOCS} lost its compliance table markers"
    documented = docs.split(DOCS_BEGIN)[1].split(DOCS_END)[0]
    assert documented == (phantom_run / "ibsi_compliance.md").read_text(), (
        f"rerun `mmdlr ibsi` and paste its ibsi_compliance.md into {DOCS}")


@pytest.mark.parametrize("value, reference, tolerance, match", [
    (1494.6, 1490, 0, True), (0.067568, 0.0676, 0, True), (0.0675, 0.0676, 0, False),
    (-0.35462, -0.355, 0, True), (9.2449, 9.31, 0.06, False), (8.54, 8.54, 0.05, True), (556.33, 556, 4, True)])
def test_within_tolerance_compares_at_the_references_three_significant_digits(value, reference, tolerance, match):
    assert within_tolerance(value, reference, tolerance) is match


def test_extraction_settings_in_ibsi_terms():
    paper_2d = dict(extraction_settings(yaml.safe_load((CONFIG_DIR / "radiomics_2d.yaml").read_text())))
    assert paper_2d["Resampling"] == "none" and paper_2d["Re-segmentation"] == "none"
    assert paper_2d["Discretisation"] == "fixed bin number, 32 bins"
    assert paper_2d["Aggregation"].startswith("2D") and "averaged over directions" in paper_2d["Aggregation"]
    phantom_3d = dict(extraction_settings(phantom_params(PRESETS["3d"])))
    assert phantom_3d["Discretisation"].startswith("fixed bin size 1 ") and phantom_3d["Aggregation"].startswith("3D")
    assert phantom_3d["Resampling"] == "none" and phantom_3d["Intensity shift"] == "0"
    custom = dict(extraction_settings({"setting": {"resampledPixelSpacing": [1, 1, 2], "interpolator": "sitkLinear",
                                                   "resegmentRange": [-50, 300], "weightingNorm": "no_weighting"}}))
    assert custom["Resampling"] == "to 1 × 1 × 2 mm (sitkLinear interpolation)"
    assert custom["Re-segmentation"] == "intensity range [-50, 300] (absolute)"
    assert custom["Discretisation"].startswith("fixed bin size 25 ")  # PyRadiomics' default
    assert "merged" in custom["Aggregation"]


def test_report_methods_state_the_radiomics_settings():
    table = pd.DataFrame({"patient_id": ["a", "b"], "label": [0, 1], "us_image": "a.png", "us_mask": "m.png"})
    manifest = Manifest(Path("/data/m.csv"), table, ["us"])
    text_2d = protocol_items(run_config_from_dict({}), manifest)["Radiomics settings (IBSI terms)"]
    assert text_2d.startswith("2D ROIs (radiomics_2d.yaml): resampling none;") and "32 bins" in text_2d
    text_3d = protocol_items(run_config_from_dict({"radiomics": {"dimension": "3d"}}), manifest)
    assert "3D ROIs of volumes (radiomics_3d.yaml)" in text_3d["Radiomics settings (IBSI terms)"]


def test_missing_phantom_is_one_line_naming_the_file(tmp_path, capsys):
    assert main(["ibsi", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "ibsi_1_reference_values_digital_phantom.csv" in error


def test_a_phantom_larger_than_the_decode_limit_is_refused_before_decoding(tmp_path, monkeypatch, capsys):
    import shutil

    import nibabel as nib
    import numpy as np

    from mmdlr.io.limits import ENVIRONMENT_KEY

    if not (IBSI_DIR / "ibsi_1_reference_values_digital_phantom.csv").is_file():
        pytest.skip(f"IBSI reference values not found at {IBSI_DIR}")
    shutil.copy(IBSI_DIR / "ibsi_1_reference_values_digital_phantom.csv", tmp_path)
    for name in ("phantom", "mask"):  # 2 MB decoded each
        nib.Nifti1Image(np.zeros((128, 128, 128), np.uint8), np.eye(4)).to_filename(tmp_path / f"{name}.nii.gz")
    monkeypatch.setenv(ENVIRONMENT_KEY, "1")
    assert main(["ibsi", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "phantom.nii.gz" in error and "io.max_decoded_mb" in error
    assert not (tmp_path / "out").exists()
