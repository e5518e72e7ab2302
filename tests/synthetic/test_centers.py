"""Synthetic centres: each centre's own scanners; centre A records what a one-centre cohort records."""

from __future__ import annotations

import hashlib

import pandas as pd
import pydicom
import pytest
from PIL import Image

from mmdlr.io.validate import validate_manifest
from mmdlr.synthetic import CohortSettings, generate_cohort
from mmdlr.synthetic.cohort import Scanner

SETTINGS = {"patients": 4, "seed": 5, "benign_fraction": 0.5, "missing_rate": 0.0}


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    root = tmp_path_factory.mktemp("centers")
    return (generate_cohort(root / "one", CohortSettings(**SETTINGS), progress=False),
            generate_cohort(root / "two", CohortSettings(**SETTINGS, centers=2), progress=False))


def test_each_centre_has_both_classes_and_its_own_scanners(cohorts):
    _, two = cohorts
    table = pd.read_csv(two, dtype=str, keep_default_na=False)
    assert (table.groupby("center")["label"].nunique() == 2).all() and set(table["center"]) == {"A", "B"}
    report = validate_manifest(two, progress=False)
    assert report.ok and (report.summary["centers"] == "A 2, B 2").all()
    b = Scanner.of_center(1, SETTINGS["seed"])
    for _, row in table.iterrows():
        us = Image.open(two.parent / row["us_image"])
        mg = pydicom.dcmread(two.parent / row["mg_image"])
        if row["center"] == "A":
            assert us.mode in ("L", "RGB") and us.size == (256, 256)
            assert mg.BitsStored == 12 and float(mg.PixelSpacing[0]) == 0.3
        else:
            assert us.mode == "I;16" and us.size == (320, 320)
            assert mg.BitsStored == 16 and float(mg.PixelSpacing[0]) == pytest.approx(0.24)
            assert mg.pixel_array.max() > 4095  # beyond centre A's 12 bits
    assert b.scale < 1 and b.offset > 0 and b.noise > 0


def test_centre_a_writes_the_one_centre_files_and_no_centre_column_without_centres(cohorts):
    one, two = cohorts
    single = pd.read_csv(one, dtype=str, keep_default_na=False)
    multi = pd.read_csv(two, dtype=str, keep_default_na=False)
    assert "center" not in single.columns
    assert single[["patient_id", "label", "split"]].equals(multi[["patient_id", "label", "split"]])
    at_a = multi[multi["center"] == "A"]
    assert single[multi["center"] == "A"].equals(at_a.drop(columns="center"))  # files and clinical cells
    files = [cell for column in at_a.columns if column.endswith(("_image", "_mask")) for cell in at_a[column] if cell]
    assert files and all(digest(one.parent / name) == digest(two.parent / name) for name in files)
    at_b = multi.loc[multi["center"] == "B", "us_image"]
    assert all(digest(one.parent / name) != digest(two.parent / name) for name in at_b)


def test_too_few_patients_per_class_for_the_centres_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="3 centers need at least 3 benign and 3 malignant patients; have 2 and 2"):
        generate_cohort(tmp_path / "c", CohortSettings(**SETTINGS, centers=3), progress=False)
