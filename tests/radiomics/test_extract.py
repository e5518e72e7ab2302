"""Radiomics extraction over cached ROIs: tables per modality, 2D vs 3D, caching, parallel, failures."""

from __future__ import annotations

import pandas as pd
import pytest

from mmdlr.cli.main import main
from mmdlr.errors import CaseError
from mmdlr.io.manifest import read_manifest
from mmdlr.radiomics.extract import extract_cohort
from mmdlr.roi.cache import crop_cohort

FEATURE_CLASSES = ("firstorder", "glcm", "glrlm", "glszm", "ngtdm", "gldm")


@pytest.fixture(scope="module")
def roi_index(small_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("rois")
    return crop_cohort(read_manifest(small_cohort), out, progress=False), out


def test_tables_per_modality_with_paper_feature_classes(roi_index, small_cohort):
    index, out = roi_index
    written = extract_cohort(index, out, progress=False)
    assert set(written) == {"us", "mg", "mr"}
    manifest = read_manifest(small_cohort)
    for modality, path in written.items():
        table = pd.read_csv(path, keep_default_na=False)
        assert list(table.columns[:4]) == ["patient_id", "label", "split", "group"]
        assert sorted(table["patient_id"]) == sorted(c["patient_id"] for c in manifest.cases(modality))
        features = table.columns[4:]
        assert all(any(f"_{cls}_" in c for c in features) for cls in FEATURE_CLASSES + ("shape2D",))
        assert not any(c.startswith("diagnostics_") for c in table.columns)
        assert table[features].notna().all().all()


def test_3d_uses_volume_shape_for_mri_only(roi_index):
    index, out = roi_index
    written = extract_cohort(index, out / "f3d", dimension="3d", progress=False)
    mr, us = pd.read_csv(written["mr"]), pd.read_csv(written["us"])
    assert any("_shape_VoxelVolume" in c for c in mr.columns)
    assert not any("_shape2D_" in c for c in mr.columns)
    assert any("_shape2D_" in c for c in us.columns)


def test_cache_and_parallel_give_identical_tables(roi_index, tmp_path):
    index, out = roi_index
    serial = extract_cohort(index, tmp_path / "a", progress=False)
    cached_files = sorted(out.rglob("radiomics_*.json"))
    assert cached_files
    stamps = [p.stat().st_mtime_ns for p in cached_files]
    parallel = extract_cohort(index, tmp_path / "b", n_jobs=2, progress=False)
    assert [p.stat().st_mtime_ns for p in cached_files] == stamps  # reused, not recomputed
    for modality in serial:
        pd.testing.assert_frame_equal(pd.read_csv(serial[modality]), pd.read_csv(parallel[modality]))


def test_failure_names_patient_and_file_and_writes_nothing(roi_index, tmp_path):
    index, _ = roi_index
    broken = index.copy()
    victim = broken.index[broken["modality"] == "us"][0]
    bad_dir = tmp_path / "bad_roi"
    bad_dir.mkdir()
    (bad_dir / "roi.json").write_text('{"key": "x"}')
    (bad_dir / "image.nii.gz").write_bytes(b"corrupt")
    (bad_dir / "mask.nii.gz").write_bytes(b"corrupt")
    broken.loc[victim, "roi_dir"] = str(bad_dir)
    with pytest.raises(CaseError) as error:
        extract_cohort(broken, tmp_path / "out", progress=False)
    assert broken.loc[victim, "patient_id"] in str(error.value)
    assert str(bad_dir / "image.nii.gz") in str(error.value)
    assert not (tmp_path / "out").exists()


def test_cli(small_cohort, tmp_path, capsys):
    assert main(["-q", "radiomics", str(small_cohort), "--out", str(tmp_path), "--n-jobs", "2"]) == 0
    assert {p.name for p in tmp_path.glob("radiomics_*.csv")} == {"radiomics_us.csv", "radiomics_mg.csv",
                                                                  "radiomics_mr.csv"}
