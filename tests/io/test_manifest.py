"""Manifest parsing and `validate`: every bad input gives its own message naming patient and file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from PIL import Image

from mmdlr.errors import ManifestError, case_problem
from mmdlr.io.limits import ENVIRONMENT_KEY
from mmdlr.io.manifest import parse_label, read_manifest
from mmdlr.io.validate import validate_manifest


def write_png(path, array):
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


@pytest.fixture()
def folder(tmp_path):
    """Four good US patients (two per class) as PNG, plus helper files for bad cases."""
    for i in range(4):
        write_png(tmp_path / f"i{i}.png", np.full((12, 12), 60 + i))
        mask = np.zeros((12, 12))
        mask[3:7, 3:7] = 255
        write_png(tmp_path / f"m{i}.png", mask)
    write_png(tmp_path / "empty_mask.png", np.zeros((12, 12)))
    write_png(tmp_path / "small_mask.png", np.full((10, 12), 255))
    (tmp_path / "corrupt.png").write_bytes(b"garbage")
    return tmp_path


def rows(n=4):
    return [{"patient_id": f"P{i}", "label": ["benign", "malignant"][i % 2], "us_image": f"i{i}.png",
             "us_mask": f"m{i}.png"} for i in range(n)]


def check(folder, table_rows, columns=None):
    path = folder / "manifest.csv"
    pd.DataFrame(table_rows, columns=columns).to_csv(path, index=False)
    return validate_manifest(path, progress=False)


def test_good_manifest_summary(folder):
    report = check(folder, rows())
    assert report.ok, report.problems
    us = report.summary.set_index("modality").loc["us"]
    assert (us["patients"], us["benign"], us["malignant"], us["dimensions"]) == (4, 2, 2, "2D")


@pytest.mark.parametrize("label,expected", [("0", 0), ("1", 1), ("Benign", 0), ("MALIGNANT", 1), ("2", None),
                                            ("", None), ("maybe", None)])
def test_parse_label(label, expected):
    assert parse_label(label) == expected


@pytest.mark.parametrize("change,message", [
    (lambda r: r[0].update(us_image="corrupt.png"), "patient P0, file {folder}/corrupt.png: cannot read"),
    (lambda r: r[1].update(us_image="absent.png"), "patient P1, file {folder}/absent.png: file not found"),
    (lambda r: r[2].update(us_mask="empty_mask.png"), "patient P2, file {folder}/empty_mask.png: mask is empty"),
    (lambda r: r[3].update(us_mask="small_mask.png"), "patient P3, file {folder}/small_mask.png: mask shape"),
    (lambda r: r[0].update(label="probably"), "patient P0: bad label 'probably'"),
    (lambda r: r[1].update(patient_id="P0"), "patient P0: duplicate patient_id on rows 2, 3"),
    (lambda r: r[2].update(us_mask=""), "patient P2: us image i2.png has no mask"),
    (lambda r: r[3].update(us_image="", us_mask=""), "patient P3: no modality present"),
    (lambda r: [x.update(label="malignant") for x in r], "only one class present (malignant)"),
])
def test_each_bad_input_has_its_own_message(folder, change, message):
    table = rows()
    change(table)
    report = check(folder, table)
    assert not report.ok
    expected = message.format(folder=folder)
    assert any(expected in problem for problem in report.problems), report.problems


def test_all_problems_reported_at_once(folder):
    table = rows()
    table[0]["us_image"] = "corrupt.png"
    table[2]["us_mask"] = "empty_mask.png"
    table[3]["label"] = "x"
    assert len(check(folder, table).problems) == 3


def test_worker_processes_report_the_same_and_keep_the_callers_decoded_size_limit(folder, monkeypatch):
    table = rows() + [{"patient_id": "P4", "label": "1", "us_image": "corrupt.png", "us_mask": "m0.png"}]
    pd.DataFrame(table).to_csv(folder / "manifest.csv", index=False)
    one, two = (validate_manifest(folder / "manifest.csv", progress=False, n_jobs=n) for n in (1, 2))
    assert one.problems == two.problems and len(two.problems) == 1 and "patient P4" in two.problems[0]
    pd.testing.assert_frame_equal(one.summary, two.summary)
    monkeypatch.setenv(ENVIRONMENT_KEY, "0.0001")  # 105 bytes: below a 12 x 12 image's
    limited = validate_manifest(folder / "manifest.csv", progress=False, n_jobs=2)
    assert sum("io.max_decoded_mb" in problem for problem in limited.problems) == 4, limited.problems


def test_a_file_the_system_cannot_open_is_its_patients_problem_in_any_number_of_processes(folder):
    too_long = "x" * 300 + ".png"  # above every common file system's 255-byte name
    table = rows() + [{"patient_id": "P4", "label": "1", "us_image": "i0.png", "us_mask": too_long},
                      {"patient_id": "P5", "label": "0", "us_image": too_long, "us_mask": "m0.png"}]
    pd.DataFrame(table).to_csv(folder / "manifest.csv", index=False)
    for n_jobs in (1, 2):
        problems = validate_manifest(folder / "manifest.csv", progress=False, n_jobs=n_jobs).problems
        assert problems == [f"us: patient P{i}, file {folder / too_long}: File name too long" for i in (4, 5)]


def test_only_an_os_error_on_the_cases_own_files_or_dicom_folder_is_the_patients_problem(tmp_path):
    case = {"patient_id": "P1", "image": str(tmp_path / "P1"), "mask": [str(tmp_path / "P1_mask.nii.gz")]}
    inside = OSError(13, "Permission denied", str(tmp_path / "P1" / "slice1.dcm"))  # a file of its DICOM folder
    assert case_problem(RuntimeError("no file"), case) is None
    wrapped = RuntimeError("applying transform")
    wrapped.__cause__ = inside
    assert str(case_problem(wrapped, case)) == f"patient P1, file {tmp_path / 'P1' / 'slice1.dcm'}: Permission denied"
    for elsewhere in (tmp_path / "P10.png", tmp_path / "out" / "roi" / "us"):  # a name it prefixes; an output
        assert case_problem(OSError(28, "No space left on device", str(elsewhere)), case) is None
    assert case_problem(OSError(5, "Input/output error"), case) is None  # no file named


def test_split_and_group_checks(folder):
    table = rows()
    for i, row in enumerate(table):
        row["split"], row["group"] = ["train", "test", "train", "validation"][i], "g1" if i < 2 else ""
    problems = check(folder, table).problems
    assert any("bad split 'validation'" in p for p in problems)
    assert any("group g1: its patients are in both train and test" in p for p in problems)


def test_missing_columns_and_paths_relative_to_csv(folder):
    report = check(folder, [{"patient_id": "P0", "us_image": "i0.png", "us_mask": "m0.png"}])
    assert "missing required column 'label'" in report.problems
    manifest_rows = rows() + [{"patient_id": "P9", "label": "1", "us_image": "", "us_mask": "",
                               "mg_image": "i0.png", "mg_mask": "m0.png;m1.png"}]
    pd.DataFrame(manifest_rows).to_csv(folder / "m.csv", index=False)
    manifest = read_manifest(folder / "m.csv")
    assert manifest.modalities == ["us", "mg"]
    (mg_case,) = manifest.cases("mg")
    assert mg_case["patient_id"] == "P9" and mg_case["label"] == 1
    assert mg_case["mask"] == [str(folder / "m0.png"), str(folder / "m1.png")]
    assert len(manifest.cases("us")) == 4  # P9 misses US: left out, not an error
    with pytest.raises(ManifestError, match="modality 'mr' not in manifest"):
        manifest.cases("mr")


def test_read_manifest_raises_with_every_structural_problem(folder):
    table = rows()
    table[0]["label"] = "?"
    table[1]["patient_id"] = "P0"
    pd.DataFrame(table).to_csv(folder / "bad.csv", index=False)
    with pytest.raises(ManifestError) as error:
        read_manifest(folder / "bad.csv")
    assert len(error.value.problems) == 2


def test_non_binary_masks_are_warnings_naming_counts_and_option(folder):
    grey_edges = np.zeros((12, 12))
    grey_edges[3:7, 3:7] = 255
    grey_edges[2, 2:9] = np.arange(10, 80, 10)  # seven grey values on the edge
    write_png(folder / "m0.png", grey_edges)
    labels = np.zeros((12, 12))
    labels[3:7, 3:7] = 1
    labels[8, 8] = 2
    write_png(folder / "labels.png", labels)
    Image.fromarray(np.asarray(grey_edges > 0, np.uint8) * 255).save(folder / "m2.jpg", quality=75)
    table = rows()
    table[1]["us_mask"], table[2]["us_mask"] = "labels.png", "m2.jpg"
    report = check(folder, table)
    assert report.ok, report.problems
    assert len(report.warnings) == 3, report.warnings
    grey, label_map, jpeg = report.warnings
    assert grey == (f"us: patient P0, file {folder}/m0.png: mask is not binary (pixels per value: 0: 121, "
                    "255: 16, 10: 1, 6 other values: 6); every non-zero value is lesion now: use "
                    "--mask-threshold 127.5 to keep values at or above it")
    assert "pixels per value: 0: 127, 1: 16, 2: 1" in label_map and "--label-value 1 to keep one label" in label_map
    assert f"file {folder}/m2.jpg: mask is not binary" in jpeg and "--mask-threshold" in jpeg

    table[1]["us_mask"] = "m1.png"  # a threshold for grey edges would empty the label map
    pd.DataFrame(table).to_csv(folder / "manifest.csv", index=False)
    with_threshold = validate_manifest(folder / "manifest.csv", progress=False, mask_threshold=128)
    assert with_threshold.ok and not with_threshold.warnings, with_threshold.problems


def test_nan_inside_the_lesion_roi_is_a_problem_outside_it_is_not(folder):
    image = np.full((40, 40), 50.0, np.float32)
    image[0, 0] = np.inf  # far outside the lesion box plus its 10-pixel margin
    sitk.WriteImage(sitk.GetImageFromArray(image), str(folder / "i0.nrrd"))  # ITK reads NaN in NIfTI as 0
    image[20, 20] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(image), str(folder / "i1.nrrd"))
    for i in range(4):
        mask = np.zeros((40, 40))
        mask[25:30, 25:30] = 255
        write_png(folder / f"m{i}.png", mask)
    table = rows()
    table[0]["us_image"], table[1]["us_image"] = "i0.nrrd", "i1.nrrd"
    write_png(folder / "i2.png", np.full((40, 40), 9))
    write_png(folder / "i3.png", np.full((40, 40), 9))
    report = check(folder, table)
    assert report.problems == [f"us: patient P1, file {folder}/i1.nrrd: 1 NaN/Inf pixel(s) inside the lesion "
                               "ROI: replace them in the image (or fix the mask if the lesion is outside the "
                               "valid data)"]
