"""Shift warnings: a model trained on 8-bit PNG ultrasound shown DICOM mammograms says so, per case, in
`mmdlr predict`, the Predictor and the server; new patients from the run's own (synthetic) scanners raise none."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from mmdlr.cli.main import main
from mmdlr.io.writers import write_nifti
from mmdlr.serve.app import create_app
from mmdlr.serve.shift import image_source

from .cases import LOCAL_URL, MODALITIES, case_files, upload_parts

US_MODEL = "radiomics_us"
PNG_TO_DICOM = "-bit DICOM while the model was trained on 8-bit PNG"


@pytest.fixture(scope="module")
def mammograms_as_us(cohort) -> pd.DataFrame:
    """Eight patients whose `us` files are their DICOM mammogram and its mask."""
    with_mg = cohort[cohort["mg_image"] != ""].head(8)
    return with_mg.assign(us_image=with_mg["mg_image"], us_mask=with_mg["mg_mask"])[["patient_id", "us_image",
                                                                                      "us_mask"]]


def test_image_source_reads_bit_depth_and_format_from_headers(small_cohort, tmp_path):
    cohort = pd.read_csv(small_cohort, dtype=str, keep_default_na=False)
    row = cohort[(cohort["us_image"] != "") & (cohort["mg_image"] != "")].iloc[0]
    folder = small_cohort.parent
    assert image_source(folder / row["us_image"]) == "8-bit PNG"
    assert image_source(folder / row["mg_image"]) == f"{pydicom.dcmread(folder / row['mg_image']).BitsStored}-bit DICOM"
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "deep.png")
    assert image_source(tmp_path / "deep.png") == "16-bit PNG"
    write_nifti(np.zeros((4, 4), np.int16), (1.0, 1.0), tmp_path / "ct.nii.gz")
    assert image_source(tmp_path / "ct.nii.gz") == "16-bit NIfTI"


def test_new_patients_from_the_same_scanners_raise_no_warning(predictor, small_cohort):
    cohort = pd.read_csv(small_cohort, dtype=str, keep_default_na=False)
    complete = cohort[(cohort[[f"{m}_{kind}" for m in MODALITIES for kind in ("image", "mask")]] != "").all(axis=1)]
    for _, row in complete.head(3).iterrows():
        row = row.copy()
        for column in [f"{m}_{kind}" for m in MODALITIES for kind in ("image", "mask")]:
            row[column] = str(small_cohort.parent / row[column])
        for prediction in predictor.predict(case_files(row), patient_id=row["patient_id"]):
            assert prediction.shift_warnings == {}, prediction.model


def test_dicom_mammograms_shown_to_a_png_ultrasound_model_warn_per_case(predictor, mammograms_as_us):
    for _, row in mammograms_as_us.iterrows():
        prediction, = predictor.predict(case_files(row, ["us"]), [US_MODEL], row["patient_id"])
        [(modality, warning)] = prediction.shift_warnings.items()
        assert modality == "us"
        assert warning.startswith(f"patient {row['patient_id']}, us: ")
        assert PNG_TO_DICOM in warning
        assert "outside training" in warning  # the 0-255 intensity range, the 1 mm (PNG) spacing


def test_predict_prints_one_line_per_case(run_dir, mammograms_as_us, tmp_path, capsys):
    manifest = tmp_path / "mammograms.csv"
    mammograms_as_us.to_csv(manifest, index=False)
    assert main(["-q", "predict", "--model-dir", str(run_dir), "--manifest", str(manifest),
                 "--out", str(tmp_path / "p.csv"), "--model", US_MODEL]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if PNG_TO_DICOM in line]
    assert sorted(line.split("patient ")[1].split(",")[0] for line in lines) == sorted(mammograms_as_us["patient_id"])


def test_server_returns_the_warnings(predictor, mammograms_as_us, cohort):
    client = TestClient(create_app(predictor), base_url=LOCAL_URL)
    shifted = client.post(f"/infer/{US_MODEL}", files=upload_parts(mammograms_as_us.iloc[0], ["us"])).json()
    assert list(shifted["shift_warnings"]) == ["us"] and PNG_TO_DICOM in shifted["shift_warnings"]["us"]
    assert shifted["shift_warnings"]["us"].startswith("us: ")
    own = cohort[cohort["us_image"] != ""].iloc[0]
    assert client.post(f"/infer/{US_MODEL}", files=upload_parts(own, ["us"])).json()["shift_warnings"] == {}
