"""`evaluation.html`: a run's models on an external cohort beside their internal results, one self-contained page
in the run report's style (its CSS, tables and figure numbering)."""

from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from mmdlr import __version__
from mmdlr.analysis.grid import TABLE_NAMES
from mmdlr.report.html import (CALIBRATION, FAMILIES, STYLE, Numbering, Raw, _ci, _html_table, _img, _p_text, _read,
                               _result_table, _sentence)

if TYPE_CHECKING:
    from mmdlr.evaluate.external import ExternalEvaluation
    from mmdlr.serve.run_folder import RunFolder

SIDE_BY_SIDE = {"auc": "AUC", "sensitivity": "Sensitivity", "specificity": "Specificity"}
DELONG_NOTE = ("Internal: the run's own results (hold-out: its test split; nested CV: each patient's out-of-fold "
               "probability averaged over repeats, from the fold models of the same specification, while the saved "
               "model was refitted on every patient). External: the saved model, unchanged, at the threshold saved "
               "with it from training. DeLong p: unpaired two-sided DeLong test of the two AUCs (independent "
               "cohorts; DeLong et al. 1988), not adjusted for multiplicity.")


def _internal_auc(record: dict) -> str:
    """The internal AUC the unpaired test used: pooled out-of-fold (nested CV) or the test set's (hold-out)."""
    metric = "pooled_auc" if "pooled_auc" in record and not pd.isna(record.get("pooled_auc")) else "auc"
    return _ci(record[metric], record[f"{metric}_low"], record[f"{metric}_high"])


def _side_by_side(family: str, internal: pd.DataFrame | None, external: pd.DataFrame, comparisons: pd.DataFrame,
                  numbers: Numbering) -> str:
    """One row per model and cohort (internal above external), so the page fits a printed page's width."""
    own = {} if internal is None else {record["method"]: record for record in internal.to_dict("records")}
    tested = comparisons.set_index("method")
    header = ["Method", "Cohort", "n", *(f"{name} [95% CI]" for name in SIDE_BY_SIDE.values()), "DeLong p",
              "Threshold"]
    rows, classes = [], []
    for record in external.to_dict("records"):
        inner = own.get(record["method"])
        if inner is None:
            internal_cells = ["–"] * (1 + len(SIDE_BY_SIDE))
        else:
            internal_cells = [int(inner["n_patients"]), *(_internal_auc(inner) if metric == "auc" else
                                            _ci(inner[metric], inner[f"{metric}_low"], inner[f"{metric}_high"])
                                            for metric in SIDE_BY_SIDE)]
        p_value = tested.at[record["method"], "delong_p"] if record["method"] in tested.index else float("nan")
        rows.append([record["method"], "internal", *internal_cells, "", ""])
        rows.append(["", "external", int(record["n_patients"]),
                     *(_ci(record[metric], record[f"{metric}_low"], record[f"{metric}_high"]) for metric in SIDE_BY_SIDE),
                     _p_text(p_value) or "–", f"{record['threshold']:.3f}"])
        classes += ["group", ""]
    name = TABLE_NAMES[family]
    return numbers.table(f"tab-side-{name}", f"{html.escape(_sentence(FAMILIES[family]))}: internal and external "
                         "performance of the same models.", _html_table(header, rows, classes), [DELONG_NOTE])


def _external_table(family: str, table: pd.DataFrame, numbers: Numbering) -> str:
    body, notes = _result_table(table, "holdout")
    method = str(table["ci_method"].iloc[0]) if len(table) else ""
    return numbers.table(f"tab-external-{TABLE_NAMES[family]}", f"{html.escape(_sentence(FAMILIES[family]))} on "
                         "the external cohort, in the run's table layout.", body,
                         notes + ([f"95% CIs: {html.escape(method)}."] if method else []))


def _calibration(evaluation: ExternalEvaluation, numbers: Numbering) -> str:
    rows, classes = [], []
    for family, table in evaluation.tables.items():
        for index, record in enumerate(table.to_dict("records")):
            rows.append([_sentence(FAMILIES[family]) if index == 0 else "", record["method"],
                         *(_ci(record[m], record[f"{m}_low"], record[f"{m}_high"]) for m in CALIBRATION)])
            classes.append("group" if index == 0 else "")
    return numbers.table("tab-external-calibration", "Calibration of every model on the external cohort.",
                         _html_table(["Feature set", "Method", *CALIBRATION.values()], rows, classes),
                         ["Brier score: 0 is perfect, 0.25 a constant 0.5. Calibration intercept (ideal 0): risks "
                          "predicted too high below 0, too low above; slope (ideal 1): predictions too extreme "
                          "below 1. A model moved to other scanners often keeps its AUC and loses its calibration."])


def _shift_section(warnings: pd.DataFrame, numbers: Numbering) -> str:
    if warnings.empty:
        return ("<p>No case lies outside the training distribution (image format and bit depth, pixel spacing, ROI "
                "intensity range, feature z-scores).</p>")
    rows = [[record["patient_id"], record["modality"], record["warning"].split(": ", 1)[1]]
            for record in warnings.to_dict("records")]
    return numbers.table("tab-shift", f"{len(warnings['patient_id'].unique())} of the external patients have inputs "
                         "outside the training distribution: their probabilities are extrapolations.",
                         _html_table(["Patient", "Modality", "Outside the training distribution"], rows),
                         ["Checked per case and modality against the run folder: image format and bit depth of the "
                          "cohort's images, in-plane pixel spacing and ROI intensity range (1st–99th percentile) of "
                          "its ROI crops, and the share of feature values beyond 5 SD of the training mean."])


def _figures(folder: Path, evaluation: ExternalEvaluation, numbers: Numbering) -> str:
    parts = []
    for family in evaluation.tables:
        path = folder / f"roc_{TABLE_NAMES[family]}.png"
        parts.append(numbers.figure(f"fig-roc-{TABLE_NAMES[family]}", _img(path.read_bytes(), f"ROC, {family}"),
                                    f"ROC curves of {html.escape(FAMILIES[family])} on the external cohort; "
                                    "legend: external AUC."))
    parts.append(numbers.figure("fig-calibration", _img((folder / "calibration.png").read_bytes(), "calibration", 120),
                                "Reliability of the models the run's report shows, on the external cohort: observed "
                                "fraction malignant against mean predicted probability in quantile bins (numbers: "
                                "patients per bin); panel titles: calibration intercept and slope [95% CI]."))
    if (folder / "decision_curve.png").is_file():
        parts.append(numbers.figure("fig-decision", _img((folder / "decision_curve.png").read_bytes(), "decision"),
                                    "Decision curves of the same models on the external cohort: net benefit of "
                                    "biopsying lesions at or "
                                    "above each threshold probability, against biopsying all or none."))
    return "".join(parts)


def render_evaluation(evaluation: ExternalEvaluation, run: RunFolder, manifest_path: str | Path,
                      folder: Path) -> str:
    """The page's HTML; ``folder`` holds the evaluation's figures (embedded)."""
    numbers = Numbering()
    internal = {family: _read(run.path / "results" / f"table_{name}.csv") for family, name in TABLE_NAMES.items()}
    comparisons = evaluation.comparisons
    shift = _shift_section(evaluation.shift_warnings, numbers)  # numbered first: it comes first
    side = "".join(_side_by_side(family, internal[family], table, comparisons[comparisons["family"] == family],
                                 numbers) for family, table in evaluation.tables.items())
    sections = [
        ("sec-shift", "Cases outside the training distribution", shift),
        ("sec-side", "Internal and external performance", side),
        ("sec-external", "External results", "".join(_external_table(family, table, numbers)
                                                     for family, table in evaluation.tables.items())
         + _calibration(evaluation, numbers)),
        ("sec-figures", "ROC, calibration and decision curves", _figures(folder, evaluation, numbers)),
    ]
    predictions = evaluation.predictions
    patients = predictions.drop_duplicates("patient_id")
    malignant = int(patients["label"].sum())
    nav = "".join(f"<a href='#{key}'>{html.escape(title)}</a>" for key, title, _ in sections)
    body = "".join(f"<h2 id='{key}'>{html.escape(title)}</h2>{content}" for key, title, content in sections)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    summary = Raw(f"{len(patients)} patients ({malignant} malignant, {len(patients) - malignant} benign) from "
                  f"<code>{html.escape(str(Path(manifest_path).resolve()))}</code>, {predictions['model'].nunique()} "
                  f"saved models of the run <code>{html.escape(str(run.path))}</code>")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>mmdlr external evaluation"
            f"</title><style>{STYLE}</style></head><body><h1 id='top'>External validation</h1><p class='note'>mmdlr "
            f"{__version__}, {created}: {summary}. Every patient went through the prediction code of "
            f"<code>mmdlr predict</code>; nothing was refitted.</p><nav>{nav}</nav>{body}</body></html>")
