"""`mmdlr predict`: a manifest of new patients -> one CSV row per patient and model, the server's numbers."""

from __future__ import annotations

import pandas as pd
from fastapi.testclient import TestClient

from mmdlr.cli.main import main
from mmdlr.serve.app import create_app

from .cases import LOCAL_URL, present, upload_parts


def test_every_usable_model_for_every_patient(predict_csv, new_manifest, predictor):
    patients = pd.read_csv(new_manifest, dtype=str, keep_default_na=False)
    assert list(predict_csv.columns) == ["patient_id", "model", "probability", "label_predicted", "modalities_used"]
    for _, row in patients.iterrows():
        rows = predict_csv[predict_csv["patient_id"] == row["patient_id"]]
        expected = {name for name, model in predictor.models.items()
                    if set(model.modalities) <= set(present(row)) or not model.needs_every_modality}
        assert set(rows["model"]) == expected
    assert predict_csv["probability"].between(0, 1).all()
    assert set(predict_csv["label_predicted"]) <= {"benign", "malignant"}
    without_mg = predict_csv[predict_csv["patient_id"] == patients["patient_id"].iloc[-1]]
    assert set(without_mg.loc[without_mg["model"] == "fusion_stacking", "modalities_used"]) == {"mr+us"}


def test_server_answers_exactly_as_predict(predict_csv, new_manifest, predictor):
    client = TestClient(create_app(predictor), base_url=LOCAL_URL)
    patients = pd.read_csv(new_manifest, dtype=str, keep_default_na=False)
    for model in ("radiomics_mg_mr_us", "deep_stacking", "fusion_ensemble"):
        for _, row in patients.head(2).iterrows():
            body = client.post(f"/infer/{model}", files=upload_parts(row)).json()
            expected = predict_csv[(predict_csv["patient_id"] == row["patient_id"]) & (predict_csv["model"] == model)]
            assert body["probability_malignant"] == expected["probability"].item()
            assert body["prediction"][0]["label"] == expected["label_predicted"].item()
            assert "+".join(body["modalities_used"]) == expected["modalities_used"].item()


def test_one_model_and_clear_errors(run_dir, new_manifest, shared_predictor, tmp_path, capsys):
    out = tmp_path / "one.csv"
    assert main(["-q", "predict", "--model-dir", str(run_dir), "--manifest", str(new_manifest), "--out", str(out),
                 "--model", "deep_us"]) == 0
    assert set(pd.read_csv(out)["model"]) == {"deep_us"}
    patients = pd.read_csv(new_manifest, dtype=str, keep_default_na=False)
    assert main(["-q", "predict", "--model-dir", str(run_dir), "--manifest", str(new_manifest), "--out", str(out),
                 "--model", "deep_mg"]) == 2
    error = capsys.readouterr().err
    assert f"patient {patients['patient_id'].iloc[-1]}: model deep_mg needs modality mg" in error
    assert main(["-q", "predict", "--model-dir", str(run_dir), "--manifest", str(new_manifest), "--out", str(out),
                 "--model", "resnet"]) == 2
    assert "unknown model 'resnet'" in capsys.readouterr().err
    half = patients.head(1).assign(us_mask="")
    half.to_csv(tmp_path / "half.csv", index=False)
    assert main(["-q", "predict", "--model-dir", str(run_dir), "--manifest", str(tmp_path / "half.csv"),
                 "--out", str(out)]) == 2
    assert "us_image and us_mask must both be given" in capsys.readouterr().err
