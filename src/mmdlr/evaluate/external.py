"""External validation: a finished run's saved models applied, unchanged, to a labelled cohort from elsewhere.

Every patient goes through the :class:`~mmdlr.serve.predictor.Predictor` (the code path of `mmdlr predict`
and `mmdlr serve`); each model decides at the threshold saved with it from training. The metrics are the
run's own hold-out metrics (:func:`~mmdlr.analysis.summary.holdout_row`) on the external patients; each
model's external AUC is compared with its internal one (the run's test or pooled out-of-fold predictions of
the same model specification) by the unpaired DeLong test.

``EVAL`` (written whole, or not at all): ``predictions.csv``, ``table_{radiomics,deep,fusion}.csv`` (the
run's table columns), ``comparisons.csv`` (internal vs external AUC), ``shift_warnings.csv``,
``roc_<family>.png``, ``calibration.png``, ``decision_curve.png`` and ``evaluation.html``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mmdlr.analysis.grid import TABLE_NAMES, GridRow
from mmdlr.analysis.plots import decision_curve_figure, plot_calibration, plot_roc
from mmdlr.analysis.summary import holdout_row, pooled_predictions, result_table
from mmdlr.atomic import atomic_path
from mmdlr.errors import ManifestError
from mmdlr.evaluate.delong import delong_auc_variance, delong_unpaired_test
from mmdlr.io.manifest import Manifest, parse_label
from mmdlr.serve.batch import predict_patients
from mmdlr.serve.predictor import Predictor

EXTERNAL = "external"
PREDICTION_COLUMNS = ["patient_id", "model", "family", "method", "classifier", "probability", "label", "threshold",
                      "modalities_used", "fold"]
COMPARISON_COLUMNS = ["model", "family", "method", "n_internal", "auc_internal", "n_external", "auc_external",
                      "delong_z", "delong_p", "note"]


@dataclass
class ExternalEvaluation:
    """What `mmdlr evaluate` computed: per-patient predictions, per-family tables, the internal vs external
    comparison and the shift warnings (patient_id, modality, warning)."""

    predictions: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    comparisons: pd.DataFrame
    shift_warnings: pd.DataFrame


def external_labels(manifest_path: str | Path) -> pd.Series:
    """Each patient's label (0/1) by patient_id; ManifestError lists every unlabelled patient."""
    table = Manifest.from_csv(manifest_path).table
    if "label" not in table:
        raise ManifestError(["missing required column 'label': evaluate needs benign/malignant (or 0/1) for every "
                             "patient"])
    labels = table.set_index("patient_id")["label"].map(parse_label)
    problems = [f"patient {pid}: label {table.set_index('patient_id').at[pid, 'label']!r} is not benign/malignant "
                "or 0/1" for pid in labels.index[labels.isna()]]
    if not problems and labels.nunique() < 2:
        problems.append(f"every patient is {'malignant' if labels.iloc[0] else 'benign'}: AUC, sensitivity and "
                        "specificity need both classes")
    if problems:
        raise ManifestError(problems)
    return labels.astype(int)


def predict_external(predictor: Predictor, manifest_path: str | Path,
                     progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every model each patient's modalities allow: (predictions with labels, shift warnings)."""
    labels = external_labels(manifest_path)
    rows, warnings = [], []
    for patient_id, predictions in predict_patients(predictor, manifest_path, None, progress, "evaluate").items():
        for prediction in predictions:
            bundle = predictor.models[prediction.model].bundle
            rows.append({**prediction.row(patient_id), "family": bundle.family, "method": bundle.method,
                         "classifier": bundle.classifier, "label": labels[patient_id],
                         "threshold": prediction.threshold, "fold": EXTERNAL})
        for modality, warning in dict(item for prediction in predictions
                                      for item in prediction.shift_warnings.items()).items():
            warnings.append({"patient_id": patient_id, "modality": modality, "warning": warning})
    predictions = pd.DataFrame(rows)
    if predictions.empty:
        raise ManifestError([f"no patient has the modalities of any saved model ({', '.join(predictor.models)})"])
    return (predictions[PREDICTION_COLUMNS],
            pd.DataFrame(warnings, columns=["patient_id", "modality", "warning"]))


def _internal_predictions(run_dir: Path) -> pd.DataFrame:
    path = run_dir / "results" / "predictions.csv"
    return pd.read_csv(path, dtype={"patient_id": str}) if path.is_file() else pd.DataFrame(
        columns=["family", "method", "patient_id", "label", "probability"])


def compare_with_internal(run_dir: Path, predictions: pd.DataFrame) -> pd.DataFrame:
    """Per model: internal and external AUC and the unpaired DeLong test between them."""
    internal = _internal_predictions(run_dir)
    rows = []
    for (model, family, method), external in predictions.groupby(["model", "family", "method"], sort=False):
        own = pooled_predictions(internal[(internal["family"] == family) & (internal["method"] == method)])
        row = {"model": model, "family": family, "method": method, "n_internal": len(own),
               "n_external": len(external), "auc_internal": np.nan, "auc_external": np.nan, "delong_z": np.nan,
               "delong_p": np.nan, "note": ""}
        classes = (own["label"].nunique() if len(own) else 0, external["label"].nunique())
        if min(classes) < 2:
            row["note"] = "no internal predictions of this model" if not len(own) else "one class only"
        elif min(np.bincount(own["label"]).min(), np.bincount(external["label"]).min()) < 2:
            row["note"] = "DeLong variance needs 2 cases per class in each cohort"
        else:
            row["auc_internal"] = delong_auc_variance(own["label"], own["probability"])[0]
            row["auc_external"] = delong_auc_variance(external["label"], external["probability"])[0]
            row["delong_z"], row["delong_p"] = delong_unpaired_test(own["label"], own["probability"],
                                                                    external["label"], external["probability"])
        rows.append(row)
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def external_tables(predictions: pd.DataFrame, n_boot: int, seed: int) -> dict[str, pd.DataFrame]:
    """Per feature family, the run's result table (hold-out metrics and CIs) on the external patients."""
    tables = {}
    for family in TABLE_NAMES:
        chosen = predictions[predictions["family"] == family]
        if chosen.empty:
            continue
        rows = [GridRow(family, method, EXTERNAL, ()) for method in dict.fromkeys(chosen["method"])]
        summaries = {(family, row.method): holdout_row(chosen[chosen["method"] == row.method], n_boot, seed)
                     for row in rows}
        tables[family] = result_table(rows, summaries)
    return tables


def evaluate_external(predictor: Predictor, manifest_path: str | Path, progress: bool = True) -> ExternalEvaluation:
    """Predictions, tables, comparisons and shift warnings of the run's models on a labelled cohort."""
    predictions, warnings = predict_external(predictor, manifest_path, progress)
    bootstrap = predictor.folder.config.analysis.bootstrap
    return ExternalEvaluation(predictions, external_tables(predictions, bootstrap.n, bootstrap.seed),
                              compare_with_internal(predictor.folder.path, predictions), warnings)


def require_replaceable(out_dir: str | Path) -> None:
    """Refuse an ``--out`` that exists and is not an earlier evaluation (writing replaces the whole folder)."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "evaluation.html").is_file())):
        raise FileExistsError(f"--out {out} exists and is not an earlier `mmdlr evaluate` folder, which it would "
                              "replace whole: choose a new folder")


def _shown_models(run_dir: Path, models: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (family, method) models the run's report draws calibration and decision curves of, among ``models``;
    every model when the run names none of them."""
    path = run_dir / "results" / "shown_models.csv"
    named = set(pd.read_csv(path)[["family", "method"]].itertuples(index=False, name=None)) if path.is_file() else ()
    return [model for model in models if model in named] or models


def write_evaluation(evaluation: ExternalEvaluation, predictor: Predictor, manifest_path: str | Path,
                     out_dir: str | Path) -> Path:
    """Write ``out_dir`` (the files listed in the module docstring) atomically; return its path."""
    from mmdlr.report.evaluation import render_evaluation

    predictions = evaluation.predictions
    models = list(dict.fromkeys(zip(predictions["family"], predictions["method"])))
    shown = _shown_models(predictor.folder.path, models)
    with atomic_path(out_dir, directory=True) as folder:
        predictions.to_csv(folder / "predictions.csv", index=False)
        for family, table in evaluation.tables.items():
            table.to_csv(folder / f"table_{TABLE_NAMES[family]}.csv", index=False)
            family_rows = [(method, EXTERNAL) for f, method in models if f == family]
            plot_roc(predictions[predictions["family"] == family], family_rows, f"{family}: external cohort",
                     folder / f"roc_{TABLE_NAMES[family]}.png", "External AUC")
        evaluation.comparisons.to_csv(folder / "comparisons.csv", index=False)
        evaluation.shift_warnings.to_csv(folder / "shift_warnings.csv", index=False)
        plot_calibration(predictions, shown, folder / "calibration.png")
        figure = decision_curve_figure(predictions, shown)
        if figure is not None:
            figure.savefig(folder / "decision_curve.png", dpi=150)
        (folder / "evaluation.html").write_text(render_evaluation(evaluation, predictor.folder, manifest_path, folder))
    return Path(out_dir)
