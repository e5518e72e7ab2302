"""MONAI Label's own client (``monailabel.client.MONAILabelClient``, 0.8.5, installed ``--no-deps``) against a real
`mmdlr serve`: ``info()``, ``infer()`` with ``file`` + ``label`` and ``client_id`` in ``params``, and the token."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from monailabel.client.client import MONAILabelClient, MONAILabelClientException  # make setup installs it

from .cases import TOKEN

MODEL = "radiomics_us"


@pytest.fixture(scope="module")
def server_url(server) -> str:
    """Base URL of the session's `mmdlr serve` (with a token)."""
    return server[0]


def authorised_client(url: str, tmp_path) -> MONAILabelClient:
    client = MONAILabelClient(url, tmpdir=str(tmp_path), client_id="pytest")
    client.update_auth({"token_type": "Bearer", "access_token": TOKEN})
    return client


def test_info_keeps_monai_label_field_names(server_url, tmp_path):
    info = authorised_client(server_url, tmp_path).info()
    assert {"name", "description", "version", "labels", "models"} <= set(info)
    model = info["models"][MODEL]
    assert model["type"] == "classification" and model["labels"] == {"benign": 0, "malignant": 1}
    assert model["modalities"] == ["us"] and model["description"]


def test_infer_with_file_and_label_matches_predict(server_url, new_manifest, predict_csv, tmp_path):
    patients = pd.read_csv(new_manifest, dtype=str, keep_default_na=False)
    row = patients[patients["us_image"] != ""].iloc[0]
    client = authorised_client(server_url, tmp_path)
    result_file, body = client.infer(MODEL, row["patient_id"], {"modality": "us", "session": "x"},
                                     file=row["us_image"], label_in=row["us_mask"])
    assert result_file is None  # a classification answers JSON only; the client hands back its raw bytes
    answer = json.loads(body)
    expected = predict_csv.set_index(["patient_id", "model"]).loc[(row["patient_id"], MODEL)]
    assert answer["probability_malignant"] == expected["probability"]
    assert answer["prediction"][0]["label"] == expected["label_predicted"]
    assert answer["label_names"] == {"benign": 0, "malignant": 1}
    assert answer["image"] == row["patient_id"] and answer["ignored_params"] == ["client_id", "session"]

    without_modality, _ = client.infer(MODEL, row["patient_id"], {}, file=row["us_image"], label_in=row["us_mask"])
    assert without_modality is None  # the model's only modality is taken
    with pytest.raises(MONAILabelClientException, match="Status: 400.*label was uploaded without file"):
        client.infer(MODEL, row["patient_id"], {}, label_in=row["us_mask"])


def test_unauthenticated_client_gets_401_naming_the_bearer_token(server_url, new_manifest, tmp_path):
    patients = pd.read_csv(new_manifest, dtype=str, keep_default_na=False)
    row = patients[patients["us_image"] != ""].iloc[0]
    client = MONAILabelClient(server_url, tmpdir=str(tmp_path))
    with pytest.raises(MONAILabelClientException, match="Status: 401.*Authorization: Bearer <token>"):
        client.info()
    with pytest.raises(MONAILabelClientException, match="Status: 401.*Authorization: Bearer <token>"):
        client.infer(MODEL, row["patient_id"], {}, file=row["us_image"], label_in=row["us_mask"])
