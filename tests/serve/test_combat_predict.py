"""A run trained with ComBat on new patients: each case's centre comes from the manifest's center column or a
serve request's params; a training centre is harmonised with its fitted effects case by case, a new centre with
effects estimated from its patients predicted together; a missing centre or a lone new-centre case is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from mmdlr.cli.main import main
from mmdlr.errors import CaseError
from mmdlr.paths import CONFIG_DIR
from mmdlr.pipeline.config import load_run_config
from mmdlr.pipeline.run import run_pipeline
from mmdlr.select.harmonize import assign_centers
from mmdlr.serve import Predictor
from mmdlr.serve.app import create_app
from mmdlr.synthetic import CohortSettings, generate_cohort

from .cases import LOCAL_URL, case_files, upload_parts

MODEL = BLOCK = "radiomics_us"  # the model and its one block of features
COLUMNS = ["patient_id", "label", "center", "us_image", "us_mask"]
# ComBat by centre on ultrasound radiomics, one classifier, a hold-out split: the smallest run that saves models
COMBAT_RUN = ["harmonize.combat=true", "families=[radiomics]", "classifiers={lr: {C: [1.0]}}", "inner_folds=2",
              "bootstrap.n=100", "fusion.early=false", "fusion.ensemble=false", "fusion.stacking=false",
              "comparisons=[]", "deep.enabled=false", "deep.baselines=[]", "parallel.n_jobs=1", "radiomics.n_jobs=1"]


def ultrasound(manifest: Path, prefix: str) -> pd.DataFrame:
    """The US columns of a generated cohort, with absolute paths and patient ids starting with ``prefix``."""
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)[COLUMNS]
    for column in ("us_image", "us_mask"):
        table[column] = [str(manifest.parent / path) for path in table[column]]
    return table.assign(patient_id=prefix + table["patient_id"].str[1:])


def write(table: pd.DataFrame, path: Path) -> Path:
    table.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def combat_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("combat")
    settings = CohortSettings(patients=24, seed=5, benign_fraction=0.5, missing_rate=0, centers=2)
    cohort = generate_cohort(folder / "cohort", settings, progress=False)
    manifest = write(ultrasound(cohort, "P"), folder / "us.csv")
    config = load_run_config(CONFIG_DIR / "paper.yaml", COMBAT_RUN)
    return run_pipeline(manifest, config, folder / "run", progress=False).out_dir


@pytest.fixture(scope="module")
def new_cohort(tmp_path_factory) -> pd.DataFrame:
    """Nine new patients, three at each of centres A and B (seen in training) and C (not)."""
    cohort = generate_cohort(tmp_path_factory.mktemp("new") / "cohort",
                             CohortSettings(patients=9, seed=11, missing_rate=0, centers=3), progress=False)
    return ultrasound(cohort, "N")


@pytest.fixture(scope="module")
def predictor(combat_run) -> Predictor:
    return Predictor.from_run_dir(combat_run)


def predict(run_dir: Path, table: pd.DataFrame, folder: Path) -> pd.DataFrame:
    assert main(["-q", "predict", "--model-dir", str(run_dir), "--manifest", str(write(table, folder / "new.csv")),
                 "--out", str(folder / "predictions.csv")]) == 0
    return pd.read_csv(folder / "predictions.csv", dtype={"patient_id": str})


@pytest.fixture(scope="module")
def new_features(predictor, new_cohort) -> dict[str, pd.DataFrame]:
    """Each new patient's radiomics table, by patient id."""
    return {row["patient_id"]: predictor.features(case_files(row, ["us"]), [MODEL], row["patient_id"],
                                                  row["center"]).tables[BLOCK] for _, row in new_cohort.iterrows()}


def by_hand(predictor: Predictor, new_features: dict[str, pd.DataFrame], table: pd.DataFrame) -> np.ndarray:
    """The saved model applied to ``table``'s patients in one call, its ComBat given their centres."""
    bundle = predictor.models[MODEL].bundle
    features = bundle.features_from_tables({BLOCK: pd.concat([new_features[pid] for pid in table["patient_id"]])})
    assert assign_centers(bundle.model, table.set_index("patient_id")["center"]) >= 1
    return bundle.predict_proba(features)


def test_training_centres_use_their_fitted_effects_case_by_case(combat_run, predictor, new_cohort, new_features,
                                                                tmp_path):
    seen = new_cohort[new_cohort["center"] != "C"]
    predicted = predict(combat_run, seen, tmp_path)
    assert predicted["patient_id"].tolist() == seen["patient_id"].tolist()
    assert set(predicted["model"]) == {MODEL}
    expected = by_hand(predictor, new_features, seen)
    np.testing.assert_allclose(predicted["probability"], expected, rtol=0, atol=1e-12)
    swapped = by_hand(predictor, new_features, seen.assign(center=seen["center"].map({"A": "B", "B": "A"})))
    assert np.abs(swapped - expected).max() > 1e-3  # the centre's effects are what moved them
    client = TestClient(create_app(predictor), base_url=LOCAL_URL)
    for index in (0, len(seen) - 1):  # one case of each centre, served alone: predict's number, bit for bit
        row = seen.iloc[index]
        response = client.post(f"/infer/{MODEL}", files=upload_parts(row, ["us"]),
                               data={"params": json.dumps({"center": row["center"]})})
        assert response.status_code == 200, response.text
        assert response.json()["probability_malignant"] == predicted["probability"].iloc[index]
        assert response.json()["ignored_params"] == []


def test_a_new_centre_is_estimated_from_its_patients_in_predict_and_evaluate(combat_run, predictor, new_cohort,
                                                                            new_features, tmp_path):
    predicted = predict(combat_run, new_cohort, tmp_path)
    assert predicted["patient_id"].tolist() == new_cohort["patient_id"].tolist()  # manifest order
    new = new_cohort[new_cohort["center"] == "C"]
    assert len(new) >= 2
    np.testing.assert_allclose(predicted.set_index("patient_id").loc[new["patient_id"], "probability"],
                               by_hand(predictor, new_features, new), rtol=0, atol=1e-12)
    assert main(["-q", "evaluate", "--model-dir", str(combat_run), "--manifest", str(tmp_path / "new.csv"),
                 "--out", str(tmp_path / "eval")]) == 0
    evaluated = pd.read_csv(tmp_path / "eval" / "predictions.csv", dtype={"patient_id": str})
    assert evaluated["patient_id"].tolist() == predicted["patient_id"].tolist()
    np.testing.assert_allclose(evaluated["probability"], predicted["probability"], rtol=0, atol=1e-12)


def test_a_missing_centre_or_a_lone_new_centre_case_is_one_line(combat_run, predictor, new_cohort, tmp_path,
                                                               capsys):
    def refused(table: pd.DataFrame) -> str:
        assert main(["-q", "predict", "--model-dir", str(combat_run), "--manifest",
                     str(write(table, tmp_path / "new.csv")), "--out", str(tmp_path / "predictions.csv")]) == 2
        message = capsys.readouterr().err.strip()
        assert "\n" not in message and "Traceback" not in message
        return message

    first = new_cohort["patient_id"].iloc[0]
    assert refused(new_cohort.drop(columns="center")) == (
        f"mmdlr predict: error: patient {first}: model {MODEL} was trained with ComBat harmonisation by centre and "
        "needs the patient's centre (site or scanner; training centres: A, B): add a center column to the manifest, "
        "or send params {\"center\": ...} to the server")
    lone = new_cohort[new_cohort["center"] != "C"].iloc[:2]
    lone = pd.concat([lone, new_cohort[new_cohort["center"] == "C"].iloc[:1]])
    message = refused(lone)
    assert f"patient {lone['patient_id'].iloc[-1]}: centre 'C' was not among the training centres" in message
    assert "with 2 or more patients of centre C" in message

    client = TestClient(create_app(predictor), base_url=LOCAL_URL)
    row = new_cohort[new_cohort["center"] == "C"].iloc[0]
    for params, status, expected in [
            (None, 400, "needs the patient's centre"),
            ({"center": "C"}, 400, "use `mmdlr predict --manifest` with 2 or more patients of centre C"),
            ({"center": 3}, 400, "params center must name the case's centre"),
            ({"center": "A" * 100_000}, 400, "at most 100 characters"),
            ({"center": "A\x1b[2J"}, 400, "non-empty printable string")]:
        response = client.post(f"/infer/{MODEL}", files=upload_parts(row, ["us"]),
                               data={"params": json.dumps(params)} if params else None)
        assert response.status_code == status and expected in response.json()["detail"], response.text


def test_new_centers_refuse_names_the_centre(combat_run, new_cohort):
    predictor = Predictor.from_run_dir(combat_run)
    for harmonizer in predictor.harmonizers[MODEL]:
        harmonizer.set_params(new_centers="refuse")
    row = new_cohort[new_cohort["center"] == "C"].iloc[0]
    with pytest.raises(CaseError, match=r"centre 'C' was not among the training centres of model radiomics_us \(A, "
                                        r"B\) and the run refuses new centres \(harmonize.new_centers: refuse\)"):
        predictor.features(case_files(row, ["us"]), None, row["patient_id"], "C")
