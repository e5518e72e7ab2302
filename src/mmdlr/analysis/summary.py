"""Result tables in the layout of the paper's Tables 2-4, from per-patient predictions."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from mmdlr.analysis.grid import GridRow
from mmdlr.evaluate import (Interval, auc_ci, binary_metrics, corrected_t_ci, group_bootstrap_ci,
                            logistic_calibration, newcombe_auc_ci, proportion_counts, wilson_ci)

METRICS = ("accuracy", "auc", "sensitivity", "specificity")
CALIBRATION_CI = ("calibration intercept (calibration-in-the-large: logistic model of the outcome with logit(p) as "
                  "offset) and slope (coefficient of logit(p)) (Cox 1958; Van Calster et al. 2016), p clipped to "
                  "[1e-6, 1 - 1e-6]: Wald 95% CI")
HOLDOUT_CI = ("accuracy, sensitivity, specificity: Wilson score (Wilson 1927); AUC: DeLong variance (DeLong et al. "
              "1988) on the logit scale (Pepe 2003; Qin & Hotilovac 2008), Newcombe score interval (Newcombe 2006) "
              "where the AUC is 0 or 1; Brier: class-stratified BCa bootstrap over groups of patients (Efron 1987; "
              "n={n}, seed={seed}); " + CALIBRATION_CI + ", model-based (cluster-robust by group where test patients "
              "share groups); on the test set")
NESTED_CI = ("mean of {folds} outer folds ({repeats} x {k}-fold) with Nadeau-Bengio corrected resampled t 95% CI "
             "(Nadeau & Bengio 2003); where a metric is equal in every fold, Wilson (proportions) or Newcombe (AUC) "
             "score interval on the out-of-fold counts of one repeat; pooled_auc: AUC of each patient's OOF "
             "probability averaged over repeats, class-stratified BCa bootstrap over groups of patients (Efron 1987; "
             "n={n}, seed={seed}); " + CALIBRATION_CI + " fitted once on the out-of-fold predictions of all {repeats} "
             "repeats stacked (every patient once per repeat, never averaged), with cluster-robust (sandwich) standard "
             "errors by patient group, so a patient's {repeats} predictions count as one cluster")
TABLE_COLUMNS = ["method", "n_patients", "accuracy", "accuracy_low", "accuracy_high", "auc", "auc_low", "auc_high",
                 "sensitivity", "sensitivity_low", "sensitivity_high", "specificity", "specificity_low",
                 "specificity_high", "brier", "brier_low", "brier_high", "cal_intercept", "cal_intercept_low",
                 "cal_intercept_high", "cal_slope", "cal_slope_low", "cal_slope_high", "threshold", "classifier",
                 "Accuracy [95% CI]", "AUC [95% CI]", "Sensitivity [95% CI]", "Specificity [95% CI]", "Brier [95% CI]",
                 "Calibration intercept [95% CI]", "Calibration slope [95% CI]", "ci_method", "ci_note"]
NESTED_COLUMNS = ["n_folds", "pooled_auc", "pooled_auc_low", "pooled_auc_high"]
FORMATTED = {"accuracy": "Accuracy", "auc": "AUC", "sensitivity": "Sensitivity", "specificity": "Specificity",
             "brier": "Brier", "cal_intercept": "Calibration intercept", "cal_slope": "Calibration slope"}


def _store(summary: dict, notes: list[str], metric: str, interval: Interval) -> None:
    summary[f"{metric}_low"], summary[f"{metric}_high"] = interval.low, interval.high
    if interval.note:
        notes.append(interval.note)


def _groups_of(predictions: pd.DataFrame, groups: pd.Series | None) -> np.ndarray | None:
    return None if groups is None else predictions["patient_id"].map(groups).to_numpy()


def _store_calibration(summary: dict, notes: list[str], predictions: pd.DataFrame, clusters) -> None:
    """Calibration intercept and slope of the predictions (see :func:`~mmdlr.evaluate.logistic_calibration`)."""
    for metric, (value, interval) in logistic_calibration(predictions["label"], predictions["probability"],
                                                          clusters).items():
        summary[metric] = value
        _store(summary, notes, metric, interval._replace(note=interval.note and f"{metric} {interval.note}"))


def holdout_row(predictions: pd.DataFrame, n_boot: int, seed: int, groups: pd.Series | None = None) -> dict:
    """Test-set metrics of one method with the intervals named in ``HOLDOUT_CI``; ``ci_note`` says why an
    interval is NaN or which fallback gave it. ``groups``: group of each patient id (see ``patient_groups``)."""
    y, probability = predictions["label"].to_numpy(), predictions["probability"].to_numpy()
    threshold = float(predictions["threshold"].iloc[0])
    summary, notes = binary_metrics(y, probability, threshold), []
    for metric, (successes, trials) in proportion_counts(y, probability, threshold).items():
        interval = wilson_ci(successes, trials)
        _store(summary, notes, metric, interval._replace(note=interval.note and f"{metric} CI {interval.note}"))
    _store(summary, notes, "auc", auc_ci(y, probability)[1])
    test_groups = _groups_of(predictions, groups)
    _store(summary, notes, "brier", group_bootstrap_ci(y, probability, test_groups, "brier", n_boot, seed))
    _store_calibration(summary, notes, predictions, test_groups)
    if test_groups is not None:
        sizes = pd.Series(test_groups).value_counts()
        if (sizes > 1).any():
            notes.append(f"{sizes[sizes > 1].sum()} test patients share {(sizes > 1).sum()} groups: Wilson and "
                         "DeLong intervals treat them as independent (too narrow); the Brier bootstrap resamples groups")
    return {**summary, "n_patients": len(y), "threshold": threshold,
            "classifier": predictions["classifier"].iloc[0],
            "ci_method": HOLDOUT_CI.format(n=n_boot, seed=seed), "ci_note": "; ".join(notes)}


def _fold_interval(metric: str, fold_values: pd.Series, outer_folds: int, repeats: int,
                   predictions: pd.DataFrame) -> tuple[float, Interval]:
    """Fold mean and its corrected t interval clipped to [0, 1]. Where every fold gives the same value the t
    interval has zero width: proportions get the Wilson and the AUC the Newcombe score interval on the
    out-of-fold counts of one repeat (all repeats' counts divided by ``repeats``)."""
    mean, low, high = corrected_t_ci(fold_values, 1 / (outer_folds - 1))
    defined = fold_values.dropna()
    if not np.isnan(low):
        return mean, Interval(max(low, 0.0), min(high, 1.0))
    if len(defined) < 2 or metric == "brier":
        return mean, Interval(np.nan, np.nan, f"{metric} CI undefined: {len(defined)} fold(s) give a value"
                                        + (", all equal" if len(defined) >= 2 else ""))
    if metric == "auc":
        labels = pooled_predictions(predictions)["label"]
        interval, method = newcombe_auc_ci(mean, int((labels == 1).sum()), int((labels == 0).sum())), "Newcombe"
    else:
        counts = [proportion_counts(fold["label"], fold["probability"], float(fold["threshold"].iloc[0]))[metric]
                  for _, fold in predictions.groupby("fold", sort=False)]
        successes, trials = np.sum(counts, axis=0) / repeats
        interval, method = wilson_ci(round(successes), round(trials)), "Wilson"
    return mean, interval._replace(note=f"{metric} {mean:.3f} in all {len(defined)} folds: {method} score interval "
                                        "on the out-of-fold counts of one repeat (corrected t has zero width)")


def nested_row(predictions: pd.DataFrame, outer_folds: int, repeats: int, n_boot: int, seed: int,
               groups: pd.Series | None = None) -> dict:
    """Fold-mean metrics with corrected resampled t CIs, plus the pooled-OOF AUC with a group bootstrap CI
    (methods in ``NESTED_CI``; ``ci_note`` names every fallback and every NaN interval)."""
    per_fold = pd.DataFrame([
        binary_metrics(fold["label"], fold["probability"], float(fold["threshold"].iloc[0]))
        for _, fold in predictions.groupby("fold", sort=False)
    ])
    summary, notes = {}, []
    for metric in (*METRICS, "brier"):
        summary[metric], interval = _fold_interval(metric, per_fold[metric], outer_folds, repeats, predictions)
        _store(summary, notes, metric, interval)
    pooled = pooled_predictions(predictions)
    pooled_groups = _groups_of(pooled, groups)
    pooled_auc, interval = auc_ci(pooled["label"], pooled["probability"])
    if not interval.note:  # no fallback needed: bootstrap over groups (the fixed-set interval ignores them)
        interval = group_bootstrap_ci(pooled["label"], pooled["probability"], pooled_groups, "auc", n_boot, seed)
    _store(summary, notes, "pooled_auc", interval._replace(note=interval.note and f"pooled OOF {interval.note}"))
    patients = predictions["patient_id"].to_numpy()
    _store_calibration(summary, notes, predictions, patients if groups is None else _groups_of(predictions, groups))
    chosen = Counter(predictions.drop_duplicates("fold")["classifier"])
    return {**summary, "n_patients": len(pooled),
            "threshold": float(predictions.drop_duplicates("fold")["threshold"].mean()),
            "classifier": ", ".join(f"{name} ({count}/{len(per_fold)})" for name, count in chosen.most_common()),
            "n_folds": len(per_fold), "pooled_auc": pooled_auc,
            "ci_method": NESTED_CI.format(folds=len(per_fold), repeats=repeats, k=outer_folds, n=n_boot, seed=seed),
            "ci_note": "; ".join(notes)}


def pooled_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per patient: label and probability averaged over the folds that tested the patient."""
    return predictions.groupby("patient_id", sort=False).agg(
        probability=("probability", "mean"), label=("label", "first")).reset_index()


def _ci_text(value: float, low: float, high: float) -> str:
    if np.isnan(value):
        return "n/a"
    return f"{value:.3f}" if np.isnan(low) else f"{value:.3f} [{low:.3f}-{high:.3f}]"


def result_table(rows: list[GridRow], summaries: dict[tuple[str, str], dict]) -> pd.DataFrame:
    """One family's table, rows in grid order, with paper-style formatted 'value [low-high]' columns."""
    records = [{"method": row.method, **summaries[(row.family, row.method)]}
               for row in rows if (row.family, row.method) in summaries]
    table = pd.DataFrame(records)
    for metric, label in FORMATTED.items():
        table[f"{label} [95% CI]"] = [_ci_text(*values) for values in
                                      table[[metric, f"{metric}_low", f"{metric}_high"]].to_numpy()]
    extra = [column for column in NESTED_COLUMNS if column in table.columns]
    return table[TABLE_COLUMNS[:-2] + extra + TABLE_COLUMNS[-2:]]


def markdown_table(table: pd.DataFrame, title: str) -> str:
    """The table as Markdown in the paper's layout, with the CI methods and the rows' CI notes below."""
    shown = table.rename(columns={"method": "Methods", "classifier": "Classifier"})
    columns = ["Methods", *(f"{label} [95% CI]" for label in FORMATTED.values()), "Classifier"]
    if "pooled_auc" in table.columns:
        shown["Pooled OOF AUC [95% CI]"] = [_ci_text(*values) for values in
                                            table[["pooled_auc", "pooled_auc_low", "pooled_auc_high"]].to_numpy()]
        columns.insert(5, "Pooled OOF AUC [95% CI]")
    cells = [[f"{value:.3f}" if isinstance(value, float) else str(value) for value in record]
             for record in shown[columns].itertuples(index=False)]
    lines = [f"## {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(record) + " |" for record in cells]
    methods = "; ".join(dict.fromkeys(table["ci_method"])) if len(table) else ""
    lines += ["", f"95% confidence intervals: {methods}.",
              *(f"* {method}: {note}." for method, note in zip(table["method"], table["ci_note"]) if note),
              "Specificity = TN / (TN + FP) (the paper's Eq. 3 prints FP / (FP + TN)).", ""]
    return "\n".join(lines)
