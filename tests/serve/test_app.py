"""Every route and every error of the HTTP API, in-process (FastAPI TestClient on a loopback Host)."""

from __future__ import annotations

import io
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from mmdlr.io.readers import read_image
from mmdlr.serve.app import ServeSettings, create_app

from .cases import AUTH, LOCAL_URL, TOKEN, upload_parts

MAX_UPLOAD_MB = 2


@pytest.fixture(scope="module")
def client(predictor):
    return TestClient(create_app(predictor, ServeSettings(token=TOKEN, max_upload_mb=MAX_UPLOAD_MB)),
                      base_url=LOCAL_URL)


@pytest.fixture(scope="module")
def patient(cohort):
    """A patient with every modality."""
    return cohort[(cohort[["us_image", "mg_image", "mr_image"]] != "").all(axis=1)].iloc[0]


@pytest.fixture()
def private_tempdir(tmp_path, monkeypatch):
    """This process's temporary files under ``tmp_path``: the other test worker's uploads in /tmp come and go."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def upload_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("mmdlr-upload-*")}


def infer(client, model, files, output="json", params=None, headers=AUTH):
    data = {"params": json.dumps(params)} if params is not None else None
    return client.post(f"/infer/{model}", params={"output": output}, files=files, data=data, headers=headers)


def test_health_needs_no_token(client):
    assert client.get("/health").json() == {"status": "ok", "inference": {"running": 0, "waiting": 0}}


def test_api_docs_need_the_token(client):
    for route in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(route).status_code == 401, route
        assert client.get(route, headers=AUTH).status_code == 200, route
    assert "/infer/{model}" in client.get("/openapi.json", headers=AUTH).json()["paths"]


def test_only_the_allowed_host_names_are_answered(client):
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        assert client.get("/health", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "mmdlr.localhost.evil.example", "10.0.0.1"):
        assert client.get("/health", headers={"Host": host}).status_code == 400, host


def test_info_lists_models_with_modalities_protocol_and_test_metrics(client, run_dir):
    assert client.get("/info/").status_code == 401
    info = client.get("/info/", headers=AUTH).json()
    assert info["name"] == "mmdlr" and info["labels"] == {"benign": 0, "malignant": 1}
    assert info["upload_fields"] == ["us_image", "us_mask", "mg_image", "mg_mask", "mr_image", "mr_mask"]
    stacking = info["models"]["fusion_stacking"]
    assert stacking["type"] == "classification" and stacking["modalities"] == ["mg", "mr", "us"]
    assert not stacking["needs_every_modality"] and info["models"]["deep_mg_mr"]["needs_every_modality"]
    assert stacking["protocol"] == {"name": "holdout", "test_size": 0.2,
                                    "metrics_on": "the run's hold-out test patients"}
    table = (run_dir / "results" / "table_fusion.csv").read_text()
    assert stacking["test_metrics"]["AUC [95% CI]"] in table and stacking["test_metrics"]["n_patients"] >= 2
    assert info["models"]["radiomics_us"]["gradcam_modalities"] == []


def test_infer_json_answers_in_the_monai_label_shape(client, patient, private_tempdir):
    before = upload_dirs()
    response = infer(client, "fusion_ensemble", upload_parts(patient, ["us", "mg"]))
    assert response.status_code == 200, response.text
    body = response.json()
    prediction, other = body["prediction"]  # every label with its score, as MONAI Label; the decided one first
    p = body["probability_malignant"]
    assert other["idx"] == 1 - prediction["idx"] and other["score"] == pytest.approx(1 - prediction["score"])
    assert prediction["idx"] == int(p >= body["threshold"])
    assert prediction["label"] == ("malignant" if prediction["idx"] else "benign")
    assert prediction["score"] == pytest.approx(p if prediction["idx"] else 1 - p)
    assert body["modalities_used"] == ["mg", "us"] and set(body["per_modality"]) == {"mg", "us"}
    assert set(body["per_modality"]["us"]["base_probabilities"]) == {"radiomics_us", "deep_us"}
    assert set(body["latencies"]) == {"upload", "inference", "total"}
    assert upload_dirs() == before  # the private upload folder is gone


def test_infer_image_is_the_gradcam_overlay(client, patient):
    response = infer(client, "deep_mg_us", upload_parts(patient, ["us", "mg"]), "image", {"modality": "mg"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    overlay = np.asarray(Image.open(io.BytesIO(response.content)))
    assert overlay.ndim == 3 and overlay.shape[2] == 3 and response.headers["x-mmdlr-modality"] == "mg"
    single = infer(client, "deep_us", upload_parts(patient, ["us"]), "image")  # one CNN: no params needed
    assert single.status_code == 200 and single.headers["x-mmdlr-modality"] == "us"
    assert infer(client, "deep_mg_us", upload_parts(patient, ["us", "mg"]), "image").status_code == 400
    no_cnn = infer(client, "radiomics_us", upload_parts(patient, ["us"]), "image")
    assert no_cnn.status_code == 400 and "no CNN features" in no_cnn.json()["detail"]
    missing = infer(client, "fusion_stacking", upload_parts(patient, ["us"]), "image", {"modality": "mr"})
    assert missing.status_code == 422 and "mr_image and mr_mask" in missing.json()["detail"]


def write_dicom_series(volume: np.ndarray, spacing, folder: Path) -> list[Path]:
    """One uncompressed DICOM file per slice, positioned along z like the NIfTI it came from."""
    paths = []
    for z, pixels in enumerate(volume.astype(np.uint16)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta, ds.SOPClassUID, ds.SOPInstanceUID = meta, MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, (ds.Rows, ds.Columns) = "MR", pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelSpacing = [float(s) for s in spacing[1:]]
        ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [0, 0, spacing[0] * z]
        ds.PixelData = pixels.tobytes()
        paths.append(folder / f"slice{z:03d}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def test_dicom_series_and_single_dicom_uploads(client, patient, tmp_path):
    """MG is a single DICOM file; the MR volume sent as a DICOM series (the image field repeated) gives the
    same CNN answer as its NIfTI."""
    nifti = infer(client, "deep_mg_mr", upload_parts(patient, ["mg", "mr"])).json()
    volume = read_image(patient["mr_image"])
    assert np.array_equal(volume.array, np.round(volume.array))  # integer grey values: lossless as uint16
    slices = write_dicom_series(volume.array, volume.spacing, tmp_path)
    series = [("mr_image", (path.name, path.read_bytes())) for path in reversed(slices)]
    mask = Path(patient["mr_mask"])
    response = infer(client, "deep_mg_mr", upload_parts(patient, ["mg"]) + series +
                     [("mr_mask", (mask.name, mask.read_bytes()))])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["per_modality"]["mr"] == nifti["per_modality"]["mr"]
    assert body["probability_malignant"] == nifti["probability_malignant"]


def test_a_client_file_name_is_only_a_format_hint(client, patient):
    image, mask = (Path(patient[f"us_{kind}"]) for kind in ("image", "mask"))
    files = [("us_image", ("/etc/passwd.png", image.read_bytes())), ("us_mask", ("../../x.png", mask.read_bytes()))]
    renamed = infer(client, "deep_us", files).json()
    original = infer(client, "deep_us", upload_parts(patient, ["us"])).json()
    assert renamed["probability_malignant"] == original["probability_malignant"]


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bad_files_are_400_naming_the_field_and_file(client, patient, private_tempdir):
    before = upload_dirs()
    image = (Path(patient["us_image"]).name, Path(patient["us_image"]).read_bytes())
    shape = read_image(patient["us_image"]).array.shape
    lesion = png_bytes(np.full((shape[0] - 1, shape[1]), 255, np.uint8))
    cases = {
        "corrupt": ([("us_image", ("scan.png", b"not a png")), ("us_mask", image)], "us_image (scan.png): cannot read"),
        "mismatch": ([("us_image", image), ("us_mask", ("short.png", lesion))], "us_mask (short.png): mask shape"),
        "empty mask": ([("us_image", image), ("us_mask", ("blank.png", png_bytes(np.zeros(shape, np.uint8))))],
                       "us_mask (blank.png): mask is empty"),
        "empty file": ([("us_image", image), ("us_mask", ("nothing.png", b""))],
                       "us_mask (nothing.png) is an empty file"),
        "bomb": ([("us_image", ("bomb.png", png_bytes(np.zeros((20000, 20000), np.uint8)))), ("us_mask", image)],
                 "us_image (bomb.png)"),
        "unknown field": ([("us_image", image), ("us_mask", image), ("dbt_image", image)],
                          "unknown file field 'dbt_image'"),
        "half a pair": ([("us_image", image)], "us_image was uploaded without us_mask"),
    }
    for name, (files, message) in cases.items():
        response = infer(client, "deep_us", files)
        assert response.status_code == 400 and message in response.json()["detail"], (name, response.text)
        assert "mmdlr-upload" not in response.json()["detail"]  # no server path leaks
    text = client.post("/infer/deep_us", data={"us_image": "/etc/passwd", "us_mask": "/etc/passwd"}, headers=AUTH)
    assert text.status_code == 400 and "must be a file upload" in text.json()["detail"]
    assert upload_dirs() == before


def test_a_lesion_too_small_for_radiomics_is_400_naming_the_mask(client, patient):
    """A 1-pixel lesion crops fine and the CNN reads it, but PyRadiomics cannot: 400 before extraction."""
    shape = read_image(patient["us_image"]).array.shape
    dot = np.zeros(shape, np.uint8)
    dot[shape[0] // 2, shape[1] // 2] = 255
    files = upload_parts(patient, ["us"])[:1] + [("us_mask", ("dot.png", png_bytes(dot)))]
    response = infer(client, "radiomics_us", files)
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("file us_mask (dot.png): the lesion is too small for radiomics")
    assert infer(client, "deep_us", files).status_code == 200


def test_unexpected_errors_are_500_with_an_error_id_and_no_internals(predictor, patient, monkeypatch, caplog):
    def failing(files, models=None, patient_id=None, center=None):
        raise RuntimeError(f"numpy exploded reading {files['us'].image}")

    monkeypatch.setattr(predictor, "predict", failing)
    client = TestClient(create_app(predictor, ServeSettings(token=TOKEN)), base_url=LOCAL_URL,
                        raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="mmdlr.serve.app"):
        response = infer(client, "deep_us", upload_parts(patient, ["us"]))
    assert response.status_code == 500
    error_id = response.json()["error_id"]
    assert len(error_id) == 32 and error_id in response.json()["detail"]
    assert "exploded" not in response.text and "mmdlr-upload" not in response.text
    [record] = [r for r in caplog.records if error_id in r.getMessage()]
    assert "numpy exploded reading" in str(record.exc_info[1]) and "/infer/deep_us" in record.getMessage()


def test_missing_modality_is_422_naming_it(client, patient):
    response = infer(client, "radiomics_mg_mr_us", upload_parts(patient, ["us", "mr"]))
    assert response.status_code == 422
    assert response.json()["detail"] == ("model radiomics_mg_mr_us needs modality mg (files mg_image and mg_mask), "
                                         "which is missing")
    assert infer(client, "fusion_stacking", []).status_code == 422


def test_unknown_model_token_params_and_output_errors(client, patient):
    files = upload_parts(patient, ["us"])
    assert infer(client, "resnet", files).status_code == 404
    assert "deep_us" in infer(client, "resnet", files).json()["detail"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = infer(client, "deep_us", files, headers=headers)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    bad_json = client.post("/infer/deep_us", files=files, data={"params": "{modality"}, headers=AUTH)
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["detail"]
    assert infer(client, "deep_us", files, params=["us"]).status_code == 400
    unknown = infer(client, "deep_us", files, params={"device": "cuda"})
    assert unknown.status_code == 200 and unknown.json()["ignored_params"] == ["device"]
    assert infer(client, "deep_us", files, output="nifti").status_code == 422


def test_uploads_over_the_limit_are_413(client, patient):
    mask = Path(patient["us_mask"])
    big = [("us_image", ("big.png", bytes(MAX_UPLOAD_MB * 2**20 + 1))), ("us_mask", (mask.name, mask.read_bytes()))]
    declared = infer(client, "deep_us", big)
    assert declared.status_code == 413 and f"{MAX_UPLOAD_MB} MB" in declared.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced while the body streams in
        yield b"--x\r\nContent-Disposition: form-data; name=\"us_image\"; filename=\"a.png\"\r\n\r\n"
        for _ in range(MAX_UPLOAD_MB * 4 + 1):
            yield bytes(2**18)
    streamed = client.post("/infer/deep_us", content=chunks(),
                           headers=AUTH | {"Content-Type": "multipart/form-data; boundary=x"})
    assert streamed.status_code == 413
