"""ROI maths, largest slice, crop transforms and the crop cache."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from mmdlr import parallel
from mmdlr.errors import CaseError
from mmdlr.io.limits import ENVIRONMENT_KEY
from mmdlr.io.manifest import read_manifest
from mmdlr.io.readers import read_image
from mmdlr.roi.box import largest_slice_index, lesion_box
from mmdlr.roi.cache import RoiSettings, crop_cohort
from mmdlr.roi.transforms import CropLesionROId, SelectLargestLesionSliced


def test_lesion_box_margins_and_clipping():
    mask = np.zeros((50, 40), bool)
    mask[10:20, 5:15] = True
    assert lesion_box(mask) == ((10, 20), (5, 15))
    assert lesion_box(mask, margin=3) == ((7, 23), (2, 18))
    assert lesion_box(mask, margin=10) == ((0, 30), (0, 25))  # clipped at the image border
    assert lesion_box(mask, margin=20, margin_unit="percent") == ((8, 22), (3, 17))
    with pytest.raises(ValueError, match="empty"):
        lesion_box(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="margin_unit"):
        lesion_box(mask, 1, "mm")


def test_largest_slice_and_3d_crop():
    volume = np.arange(5 * 30 * 30, dtype=np.float32).reshape(1, 5, 30, 30)
    mask = np.zeros((1, 5, 30, 30), np.uint8)
    mask[0, 1, 10:12, 10:12] = 1
    mask[0, 3, 5:20, 8:25] = 1
    mask[0, 2, 6:15, 9:20] = 1
    assert largest_slice_index(mask[0]) == 3
    data = {"image": volume, "mask": mask, "image_meta": {"spacing": (3.0, 0.5, 0.5)}}
    data = SelectLargestLesionSliced()(data)
    assert data["slice_index"] == 3 and data["image"].shape == (1, 30, 30)
    np.testing.assert_array_equal(data["image"], volume[:, 3])
    assert data["image_meta"]["spacing"] == (0.5, 0.5)
    assert data["image_meta"]["volume_spacing"] == (3.0, 0.5, 0.5)
    data = CropLesionROId(margin=2)(data)
    assert data["roi_box"] == ((3, 22), (6, 27))
    assert data["image"].shape == (1, 19, 21) and data["mask"].sum() == 15 * 17
    assert data["roi_box_3d"] == ((0, 5), (3, 22), (6, 27))
    assert data["mask_3d"].sum() == mask.sum()


def test_2d_input_passes_largest_slice_untouched():
    data = {"image": np.ones((1, 8, 8)), "mask": np.ones((1, 8, 8))}
    assert "slice_index" not in SelectLargestLesionSliced()(data)


def test_crop_cohort_writes_reuses_and_invalidates(small_cohort, tmp_path):
    manifest = read_manifest(small_cohort)
    index = crop_cohort(manifest, tmp_path, progress=False)
    expected = sum(len(manifest.cases(m)) for m in manifest.modalities)
    assert len(index) == expected
    assert set(index["ndim"][index["modality"] == "mr"]) == {3}
    mr_dir = tmp_path / "roi" / "mr" / index.loc[index["modality"] == "mr", "patient_id"].iloc[0]
    assert {p.name for p in mr_dir.iterdir()} == {"image.nii.gz", "mask.nii.gz", "image_3d.nii.gz",
                                                   "mask_3d.nii.gz", "roi.json"}
    roi = read_image(mr_dir / "image.nii.gz")
    roi_mask = read_image(mr_dir / "mask.nii.gz")
    assert roi.array.shape == roi_mask.array.shape and roi_mask.array.any()
    assert roi.spacing == pytest.approx((0.6, 0.6))
    assert read_image(mr_dir / "mask_3d.nii.gz").spacing == pytest.approx((3.0, 0.6, 0.6))
    written = pd.read_csv(tmp_path / "roi" / "roi_index.csv", keep_default_na=False)
    assert written["patient_id"].tolist() == index["patient_id"].tolist()
    assert (written["lesion_pixels"] > 0).all()

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "roi").rglob("roi.json")}
    crop_cohort(manifest, tmp_path, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "roi").rglob("roi.json")} == stamps

    crop_cohort(manifest, tmp_path, RoiSettings(margin=0), progress=False)
    record = json.loads((mr_dir / "roi.json").read_text())
    assert record["settings"]["margin"] == 0
    assert all(p.stat().st_mtime_ns != stamps[p] for p in stamps)
    assert not list((tmp_path / "roi").rglob(".*"))  # no temporary leftovers


def test_crop_cohort_in_worker_processes_writes_the_same_crops_under_the_same_limit(small_cohort, tmp_path,
                                                                                    monkeypatch):
    manifest = read_manifest(small_cohort)
    one, two = (crop_cohort(manifest, tmp_path / str(n), progress=False, n_jobs=n) for n in (1, 2))
    pd.testing.assert_frame_equal(one.drop(columns="roi_dir"), two.drop(columns="roi_dir"))
    for first, second in zip(one["roi_dir"], two["roi_dir"]):
        for name in ("image.nii.gz", "mask.nii.gz"):
            np.testing.assert_array_equal(read_image(f"{first}/{name}").array, read_image(f"{second}/{name}").array)
    monkeypatch.setenv(ENVIRONMENT_KEY, "0.0001")  # the workers above started under the default limit
    with pytest.raises(CaseError, match=f"(?s){len(one)} ROI.*io.max_decoded_mb"):
        crop_cohort(manifest, tmp_path / "limited", progress=False, n_jobs=2)


def test_interrupted_crop_cohort_stops_its_workers_and_leaves_no_temporary_folder(small_cohort, tmp_path,
                                                                                  monkeypatch):
    """Interrupted, joblib kills its workers, some mid-write: their temporary ROI folders go too."""
    killed_mid_write = tmp_path / "roi" / "us" / ".P0002.0123abcd.tmp"  # what a worker killed mid-write leaves
    (killed_mid_write / "image.nii.gz").parent.mkdir(parents=True)
    (killed_mid_write / "image.nii.gz").write_bytes(b"half")

    def interrupted_after_one(results, *_):  # Ctrl-C between two results, the workers still busy
        yield next(iter(results))
        raise KeyboardInterrupt

    monkeypatch.setattr(parallel, "track", interrupted_after_one)
    with pytest.raises(KeyboardInterrupt):
        crop_cohort(read_manifest(small_cohort), tmp_path, progress=False, n_jobs=2)
    time.sleep(1)  # what workers still running would write meanwhile
    assert not list((tmp_path / "roi").rglob(".*"))
    assert not (tmp_path / "roi" / "roi_index.csv").exists()


def test_crop_cohort_reports_every_failure_and_writes_no_index(small_cohort, tmp_path):
    table = pd.read_csv(small_cohort, dtype=str, keep_default_na=False)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    first_us = table.index[table["us_image"] != ""][0]
    table.loc[first_us, "us_image"] = str(broken)
    manifest_path = small_cohort.parent / "manifest_broken.csv"
    table.to_csv(manifest_path, index=False)
    with pytest.raises(CaseError) as error:
        crop_cohort(read_manifest(manifest_path), tmp_path / "out", progress=False)
    assert table.loc[first_us, "patient_id"] in str(error.value) and "broken.png" in str(error.value)
    assert not (tmp_path / "out" / "roi" / "roi_index.csv").exists()


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_crop_cohort_lists_every_file_the_system_cannot_open_as_its_patients_problem(small_cohort, tmp_path, n_jobs):
    table = pd.read_csv(small_cohort, dtype=str, keep_default_na=False)
    too_long = str(tmp_path / ("x" * 300 + ".png"))  # above every common file system's 255-byte name
    with_us = table.index[table["us_image"] != ""][:2]
    table.loc[with_us[0], "us_image"] = too_long
    table.loc[with_us[1], "us_mask"] = too_long
    manifest_path = small_cohort.parent / f"manifest_unopenable_{n_jobs}.csv"
    table.to_csv(manifest_path, index=False)
    with pytest.raises(CaseError) as error:
        crop_cohort(read_manifest(manifest_path), tmp_path / "out", progress=False, n_jobs=n_jobs)
    assert str(error.value).splitlines()[1:] == [
        f"  us: patient {table.loc[row, 'patient_id']}, file {too_long}: File name too long" for row in with_us]


def test_an_output_folder_that_cannot_be_written_is_not_blamed_on_a_patient(small_cohort, tmp_path):
    out = tmp_path / "out"
    (out / "roi").mkdir(parents=True)
    (out / "roi" / "us").write_text("a file where the US folder belongs")
    with pytest.raises(OSError) as error:
        crop_cohort(read_manifest(small_cohort), out, progress=False)
    assert not isinstance(error.value, CaseError)


def test_non_finite_pixels_inside_the_roi_are_an_error_naming_patient_and_file():
    volume = np.ones((1, 4, 30, 30), np.float32)
    volume[0, 0, 0, 0] = np.nan  # outside the box and its margin: ignored
    mask = np.zeros((1, 4, 30, 30), np.uint8)
    mask[0, 2, 10:15, 10:15] = 1
    data = {"patient_id": "P7", "image": volume, "mask": mask,
            "image_meta": {"spacing": (3.0, 1.0, 1.0), "path": "/data/p7.nrrd"}}
    assert CropLesionROId(margin=2)(SelectLargestLesionSliced()(data))["image"].shape == (1, 9, 9)
    for index, kind in (((0, 1, 12, 12), "on another slice"), ((0, 2, 9, 16), "in the margin")):
        broken = dict(data, image=volume.copy())
        broken["image"][index] = np.inf
        with pytest.raises(CaseError, match="1 NaN/Inf pixel.s. inside the lesion ROI") as error:
            CropLesionROId(margin=2)(SelectLargestLesionSliced()(broken))
        assert (error.value.patient_id, error.value.path) == ("P7", "/data/p7.nrrd"), kind
