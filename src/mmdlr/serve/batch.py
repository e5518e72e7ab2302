"""`mmdlr predict`: every patient of a manifest of new patients through the Predictor, as one table.

The manifest has the cohort format (docs/contracts.md) without the need for labels: ``patient_id``,
``<mod>_image``/``<mod>_mask`` pairs for the run's modalities and, for a run trained with ComBat, ``center``;
other columns are ignored. Every patient's features are computed first, then the models predict them all,
so that ComBat can estimate a centre not seen in training from its patients here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from mmdlr.errors import ManifestError
from mmdlr.io.manifest import Manifest
from mmdlr.serve.predictor import CaseFiles, Prediction, Predictor

log = logging.getLogger(__name__)
PREDICTION_COLUMNS = ["patient_id", "model", "probability", "label_predicted", "modalities_used"]


def new_patients(manifest_path: str | Path,
                 modalities: list[str]) -> tuple[dict[str, dict[str, CaseFiles]], dict[str, str | None]]:
    """Per patient, the files of each of ``modalities`` the manifest gives, and the patient's centre (None
    without a center column); ManifestError lists every problem."""
    manifest = Manifest.from_csv(manifest_path)
    table = manifest.table
    problems = [] if "patient_id" in table else ["missing required column 'patient_id'"]
    known = [m for m in modalities if f"{m}_image" in table and f"{m}_mask" in table]
    if not known:
        problems.append(f"no column pair <mod>_image, <mod>_mask for the run's modalities ({', '.join(modalities)})")
    if problems:
        raise ManifestError(problems)
    ids = table["patient_id"]
    problems += [f"patient {pid}: duplicate patient_id" for pid in ids[ids.duplicated()]]
    problems += [f"patient {row['patient_id']}: {m}_image and {m}_mask must both be given or both be empty"
                 for _, row in table.iterrows() for m in known if bool(row[f"{m}_image"]) != bool(row[f"{m}_mask"])]
    if problems:
        raise ManifestError(problems)
    patients: dict[str, dict[str, CaseFiles]] = {pid: {} for pid in table["patient_id"]}
    for modality in known:
        for case in manifest.cases(modality):
            patients[case["patient_id"]][modality] = CaseFiles(Path(case["image"]), tuple(map(Path, case["mask"])))
    centers = manifest.centers
    return patients, {pid: None if centers is None else centers[pid] for pid in patients}


def predict_patients(predictor: Predictor, manifest_path: str | Path, model: str | None = None,
                     progress: bool = True, desc: str = "predict") -> dict[str, list[Prediction]]:
    """Each patient's predictions by ``model`` only (every patient must have its modalities) or by every model
    its modalities allow, in manifest order; shift warnings are logged."""
    patients, centers = new_patients(manifest_path, predictor.folder.modalities)
    models = None if model is None else [model]
    predictor.check_cases([(files, patient_id, centers[patient_id]) for patient_id, files in patients.items()],
                          models)  # fail before computing anything
    cases = [predictor.features(files, models, patient_id, centers[patient_id])
             for patient_id, files in tqdm(patients.items(), desc=desc, unit="patient", disable=not progress)]
    answers = dict(zip(patients, predictor.predict_cases(cases)))
    for patient_id, predictions in answers.items():
        if not predictions:
            log.warning("patient %s: no model can use its modalities (%s)", patient_id,
                        ", ".join(patients[patient_id]) or "none")
        for warning in dict.fromkeys(w for prediction in predictions for w in prediction.shift_warnings.values()):
            log.warning("outside the training distribution: %s", warning)
    return answers


def predict_manifest(predictor: Predictor, manifest_path: str | Path, model: str | None = None,
                     progress: bool = True) -> pd.DataFrame:
    """One row per patient and model: ``model`` only (every patient must have its modalities), or every
    model each patient's modalities allow."""
    answers = predict_patients(predictor, manifest_path, model, progress)
    rows = [prediction.row(patient_id) for patient_id, predictions in answers.items() for prediction in predictions]
    return pd.DataFrame(rows, columns=PREDICTION_COLUMNS)
