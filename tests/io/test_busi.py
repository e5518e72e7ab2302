"""The BUSI adapter on the real folder: mask union, duplicates and both-label images removed."""

from __future__ import annotations

import pandas as pd
import pytest

from mmdlr.io.busi import import_busi
from mmdlr.io.validate import validate_manifest


@pytest.mark.busi
def test_import_busi_removes_duplicates(busi_dir, tmp_path):
    result = import_busi(busi_dir, tmp_path / "busi.csv", progress=False)
    removed = result.removed.set_index("patient_id")
    # documented in PROVENANCE.md: the same image under both labels
    assert removed.loc["benign_433", "reason"] == removed.loc["malignant_145", "reason"] == \
        "same lesion under both labels"
    assert removed.loc["benign_320", "duplicate_of"] == "benign_003"
    kept = set(result.manifest["patient_id"])
    assert not kept & set(removed.index)
    assert "benign_003" in kept
    assert 15 <= (removed["reason"] == "duplicate of a kept image").sum() <= 40
    assert len(result.manifest) + len(removed) == 647  # every image is either kept or listed as removed
    written = pd.read_csv(tmp_path / "busi.csv", keep_default_na=False)
    assert written["label"].value_counts().to_dict() == result.manifest["label"].value_counts().to_dict()
    multi = written[written["us_mask"].str.contains(";")]
    assert len(multi) >= 10  # images with _mask_1.png are unioned
    assert (tmp_path / "busi_removed.csv").exists()


@pytest.mark.busi
def test_import_busi_keep_duplicates_groups_them(busi_dir, tmp_path):
    result = import_busi(busi_dir, tmp_path / "busi.csv", keep_duplicates=True, progress=False)
    table = result.manifest.set_index("patient_id")
    assert table.loc["benign_003", "group"] == table.loc["benign_320", "group"] != ""
    assert "benign_433" not in table.index  # both-label images are always removed


@pytest.mark.busi
@pytest.mark.slow
def test_busi_manifest_validates(busi_dir, tmp_path):
    result = import_busi(busi_dir, tmp_path / "busi.csv", progress=False)
    report = validate_manifest(result.manifest_path, progress=False)
    assert report.ok, report.problems[:5]
    assert report.summary.loc[0, "patients"] == len(result.manifest)
