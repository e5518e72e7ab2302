"""Region tables and perturbed re-extractions on cached ROIs; ICC(3,1) against a published case."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmdlr.analysis.config import ConfigError
from mmdlr.errors import CaseError
from mmdlr.io.manifest import read_manifest
from mmdlr.pipeline.config import run_config_from_dict
from mmdlr.pipeline.run import _radiomics_stage
from mmdlr.radiomics.extract import extract_cohort
from mmdlr.radiomics.robustness import extract_perturbed, feature_class, icc_table, plot_icc_by_class
from mmdlr.report.html import Numbering, RunFacts, _figures_section
from mmdlr.roi.cache import RoiSettings, crop_cohort
from mmdlr.select.icc import feature_icc

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges; ICC(3,1) = 0.71
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])


def test_icc_3_1_matches_shrout_and_fleiss():
    ratings = {f"judge {j}": pd.DataFrame({"x": SHROUT_FLEISS[:, j], "constant": 1.0}, index=list("abcdef"))
               for j in range(4)}
    icc = feature_icc(ratings)
    assert icc.loc["x", "icc"] == pytest.approx(0.7148, abs=1e-4)
    assert icc.loc["x", "icc_low"] < 0.71 < icc.loc["x", "icc_high"]
    assert np.isnan(icc.loc["constant", "icc"])  # no variance: no ICC


@pytest.fixture(scope="module")
def us_rois(small_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("regions")
    index = crop_cohort(read_manifest(small_cohort), out, RoiSettings(regions="both"), progress=False)
    return index[index["modality"] == "us"].head(8), out


def test_each_region_and_perturbation_gets_its_own_table(us_rois):
    index, out = us_rois
    written = extract_cohort(index, out / "features", regions=("intratumoral", "peritumoral"), progress=False)
    assert {name: path.name for name, path in written.items()} == {
        "us": "radiomics_us.csv", "us_peritumoral": "radiomics_us_peritumoral.csv"}
    lesion, ring = (pd.read_csv(written[name]).set_index("patient_id") for name in ("us", "us_peritumoral"))
    assert list(lesion.index) == list(ring.index) == list(index["patient_id"])
    assert not np.allclose(lesion["original_firstorder_Mean"], ring["original_firstorder_Mean"])
    assert (ring["original_shape2D_PixelSurface"] > 0).all()

    perturbed = extract_perturbed(index, out / "features", ["erode_1px", "jitter_1px"],
                                  regions=("intratumoral", "peritumoral"), progress=False)
    assert sorted(f"{p.parent.name}/{p.name}" for p in perturbed) == [
        "radiomics_us/erode_1px.csv", "radiomics_us/jitter_1px.csv",
        "radiomics_us_peritumoral/erode_1px.csv", "radiomics_us_peritumoral/jitter_1px.csv", "robustness/icc.csv"]
    eroded = pd.read_csv(out / "features/robustness/radiomics_us/erode_1px.csv").set_index("patient_id")
    assert (eroded["original_shape2D_PixelSurface"] < lesion["original_shape2D_PixelSurface"]).all()

    icc = pd.read_csv(out / "features/robustness/icc.csv")
    pd.testing.assert_frame_equal(icc, icc_table(out / "features"), check_dtype=False)
    assert set(icc["table"]) == {"radiomics_us", "radiomics_us_peritumoral"}
    area = icc[(icc["table"] == "radiomics_us") & (icc["feature"] == "original_shape2D_PixelSurface")]
    assert area["icc"].iloc[0] > 0.9 and area["feature_class"].iloc[0] == "shape2D"
    assert plot_icc_by_class(icc, out / "icc.png", 0.75).stat().st_size > 0
    figures = _figures_section(out / "results", Numbering(), RunFacts("nested_cv", "patient", 1, 5, {}, {}))
    assert "id='fig-icc'" in figures and "ICC(3,1) of every radiomic feature" in figures


def test_a_perturbation_that_erases_the_lesion_names_the_patient(us_rois):
    index, out = us_rois
    with pytest.raises(CaseError, match=r"patient .*erode_50px.* leaves no lesion pixel"):
        extract_perturbed(index.head(1), out / "f", ["erode_50px"], progress=False)


def test_feature_class_of_plain_and_block_prefixed_names():
    assert feature_class("original_glcm_Contrast") == "glcm"
    assert feature_class("radiomics_us_peritumoral__original_shape2D_Elongation") == "shape2D"


def test_radiomics_stage_writes_the_configured_regions_and_perturbations_only(us_rois, tmp_path):
    index, _ = us_rois
    (tmp_path / "features" / "robustness" / "radiomics_mg").mkdir(parents=True)
    (tmp_path / "features" / "radiomics_mg_peritumoral.csv").write_text("an earlier run's region\n")
    config = run_config_from_dict({"roi": {"regions": "both"},
                                   "radiomics": {"robustness": ["erode_1px"], "n_jobs": 1}})
    written = _radiomics_stage(index.head(5), config, tmp_path)
    assert sorted(path.relative_to(tmp_path / "features").as_posix() for path in written) == [
        "radiomics_us.csv", "radiomics_us_peritumoral.csv", "robustness/icc.csv",
        "robustness/radiomics_us/erode_1px.csv", "robustness/radiomics_us_peritumoral/erode_1px.csv"]
    assert not (tmp_path / "features" / "radiomics_mg_peritumoral.csv").exists()
    assert not (tmp_path / "features" / "robustness" / "radiomics_mg").exists()


@pytest.mark.parametrize(("override", "message"), [
    ({"roi": {"regions": "ring"}}, "roi.regions must be one of intratumoral, peritumoral, both"),
    ({"roi": {"peritumoral_mm": 0}}, "roi.peritumoral_mm must be a ring width > 0 mm"),
    ({"radiomics": {"robustness": ["shrink_1px"]}}, "radiomics.robustness: contour perturbation 'shrink_1px'"),
])
def test_region_and_robustness_settings_are_checked_at_load(override, message):
    with pytest.raises(ConfigError, match=message):
        run_config_from_dict(override)
