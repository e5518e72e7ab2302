"""The synthetic cohort: real formats, plausible tags, class balance, missing modalities, determinism."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image

from mmdlr.io.validate import validate_manifest
from mmdlr.synthetic import CohortSettings, generate_cohort


def digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_formats_tags_and_validation(small_cohort):
    root = small_cohort.parent
    table = pd.read_csv(small_cohort, dtype=str, keep_default_na=False)
    assert validate_manifest(small_cohort, progress=False).ok
    mg = [pydicom.dcmread(root / p) for p in table["mg_image"] if p]
    assert all(ds.Modality == "MG" and ds.ViewPosition == "CC" and ds.BitsAllocated == 16 for ds in mg)
    assert all(float(ds.PixelSpacing[0]) > 0 for ds in mg)
    assert sum(ds.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless for ds in mg) == 1
    modes = {Image.open(root / p).mode for p in table["us_image"] if p}
    assert modes == {"L", "RGB"}
    mr = [p for p in table["mr_image"] if p]
    assert all(p.endswith(".nii.gz") for p in mr)
    assert set(table.columns) >= {"age", "diameter_mm", "birads", "ca153", "menopause", "split"}


def test_class_balance_missing_modalities_and_split():
    settings = CohortSettings(patients=100, seed=3, missing_rate=0.15)
    from mmdlr.synthetic.cohort import _assign_classes

    benign, test = _assign_classes(settings)
    assert benign.sum() == 35
    assert test.sum() == 20 and test[benign].sum() == 7


def test_same_seed_same_files_in_any_number_of_processes_other_seed_differs(tmp_path):
    settings = CohortSettings(patients=5, seed=11)
    first = generate_cohort(tmp_path / "a", settings, progress=False).parent
    second = generate_cohort(tmp_path / "b", settings, progress=False, n_jobs=2).parent
    third = generate_cohort(tmp_path / "c", CohortSettings(patients=5, seed=12), progress=False).parent
    assert digests(first) == digests(second)
    assert digests(first) != digests(third)


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        generate_cohort(tmp_path, CohortSettings(patients=4), progress=False)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_classes_differ_as_radiologists_describe(tmp_path):
    """Malignant lesions are more irregular (lower solidity) and more heterogeneous on average."""
    from scipy import ndimage

    from mmdlr.io.loading import load_case_transforms
    from mmdlr.io.manifest import read_manifest

    manifest = read_manifest(generate_cohort(tmp_path / "c", CohortSettings(patients=40, seed=5, missing_rate=0),
                                             progress=False))
    load = load_case_transforms()
    stats = []
    for case in manifest.cases("us"):
        data = load(case)
        mask = data["mask"][0].astype(bool)
        filled = ndimage.binary_fill_holes(mask)
        perimeter = (filled ^ ndimage.binary_erosion(filled)).sum()
        compactness = perimeter ** 2 / filled.sum()
        stats.append((case["label"], compactness, data["image"][0][mask].std() / data["image"][0][mask].mean()))
    stats = np.array(stats)
    benign, malignant = stats[stats[:, 0] == 0], stats[stats[:, 0] == 1]
    assert malignant[:, 1].mean() > benign[:, 1].mean()
    assert malignant[:, 2].mean() > benign[:, 2].mean()
