"""Result tables in the layout of the paper's Tables 2-4, from per-patient predictions."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from mmdlr.analysis.grid import GridRow
from mmdlr.evaluate import binary_metrics, bootstrap_ci, corrected_t_ci, delong_ci, delong_test

METRICS = ("accuracy", "auc", "sensitivity", "specificity")
HOLDOUT_CI = ("AUC: DeLong; accuracy, sensitivity, specificity: class-stratified bootstrap percentile "
              "(n={n}, seed={seed}) on the test set")
NESTED_CI = ("mean of {folds} outer folds ({repeats} x {k}-fold) with Nadeau-Bengio corrected resampled t 95% CI; "
             "pooled_auc: AUC of each patient's OOF probability averaged over repeats, bootstrap percentile CI "
             "(n={n}, seed={seed})")
TABLE_COLUMNS = ["method", "n_patients", "accuracy", "accuracy_low", "accuracy_high", "auc", "auc_low", "auc_high",
                 "sensitivity", "sensitivity_low", "sensitivity_high", "specificity", "specificity_low",
                 "specificity_high", "brier", "threshold", "classifier", "AUC [95% CI]", "Sensitivity [95% CI]",
                 "Specificity [95% CI]", "ci_method"]
NESTED_COLUMNS = ["n_folds", "pooled_auc", "pooled_auc_low", "pooled_auc_high"]


def _both_classes(labels) -> bool:
    return len(np.unique(labels)) == 2


def holdout_row(predictions: pd.DataFrame, n_boot: int, seed: int) -> dict:
    """Test-set metrics of one method, AUC CI by DeLong, the others by bootstrap."""
    y, probability = predictions["label"].to_numpy(), predictions["probability"].to_numpy()
    threshold = float(predictions["threshold"].iloc[0])
    summary = binary_metrics(y, probability, threshold)
    intervals = bootstrap_ci(y, probability, threshold, n_boot, seed)
    if _both_classes(y):
        _, *intervals["auc"] = delong_ci(y, probability)
    for metric in METRICS:
        summary[f"{metric}_low"], summary[f"{metric}_high"] = intervals[metric]
    return {**summary, "n_patients": len(y), "threshold": threshold,
            "classifier": predictions["classifier"].iloc[0],
            "ci_method": HOLDOUT_CI.format(n=n_boot, seed=seed)}


def nested_row(predictions: pd.DataFrame, outer_folds: int, repeats: int, n_boot: int, seed: int) -> dict:
    """Fold-mean metrics with corrected resampled t CIs, plus the pooled-OOF AUC with a bootstrap CI."""
    per_fold = pd.DataFrame([
        binary_metrics(fold["label"], fold["probability"], float(fold["threshold"].iloc[0]))
        for _, fold in predictions.groupby("fold", sort=False)
    ])
    summary = {}
    for metric in METRICS:  # proportions: the t interval is clipped to [0, 1]
        mean, low, high = corrected_t_ci(per_fold[metric], 1 / (outer_folds - 1))
        summary[metric], summary[f"{metric}_low"], summary[f"{metric}_high"] = mean, max(low, 0.0), min(high, 1.0)
    pooled = pooled_predictions(predictions)
    pooled_auc = roc_auc_score(pooled["label"], pooled["probability"]) if _both_classes(pooled["label"]) else np.nan
    low, high = bootstrap_ci(pooled["label"], pooled["probability"], 0.5, n_boot, seed)["auc"]
    chosen = Counter(predictions.drop_duplicates("fold")["classifier"])
    return {**summary, "brier": float(per_fold["brier"].mean()), "n_patients": len(pooled),
            "threshold": float(predictions.drop_duplicates("fold")["threshold"].mean()),
            "classifier": ", ".join(f"{name} ({count}/{len(per_fold)})" for name, count in chosen.most_common()),
            "n_folds": len(per_fold), "pooled_auc": pooled_auc, "pooled_auc_low": low, "pooled_auc_high": high,
            "ci_method": NESTED_CI.format(folds=len(per_fold), repeats=repeats, k=outer_folds, n=n_boot, seed=seed)}


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
    for metric, label in (("auc", "AUC"), ("sensitivity", "Sensitivity"), ("specificity", "Specificity")):
        table[f"{label} [95% CI]"] = [_ci_text(*values) for values in
                                      table[[metric, f"{metric}_low", f"{metric}_high"]].to_numpy()]
    extra = [column for column in NESTED_COLUMNS if column in table.columns]
    return table[TABLE_COLUMNS[:-1] + extra + TABLE_COLUMNS[-1:]]


def markdown_table(table: pd.DataFrame, title: str) -> str:
    """The table as Markdown in the paper's layout, with the CI method as a note."""
    shown = table.rename(columns={"method": "Methods", "accuracy": "Accuracy", "brier": "Brier",
                                  "classifier": "Classifier"})
    columns = ["Methods", "Accuracy", "AUC [95% CI]", "Sensitivity [95% CI]", "Specificity [95% CI]", "Brier",
               "Classifier"]
    if "pooled_auc" in table.columns:
        shown["Pooled OOF AUC [95% CI]"] = [_ci_text(*values) for values in
                                            table[["pooled_auc", "pooled_auc_low", "pooled_auc_high"]].to_numpy()]
        columns.insert(5, "Pooled OOF AUC [95% CI]")
    cells = [[f"{value:.3f}" if isinstance(value, float) else str(value) for value in record]
             for record in shown[columns].itertuples(index=False)]
    lines = [f"## {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(record) + " |" for record in cells]
    notes = "; ".join(dict.fromkeys(table["ci_method"])) if len(table) else ""
    lines += ["", f"95% confidence intervals: {notes}.",
              "Specificity = TN / (TN + FP) (the paper's Eq. 3 prints FP / (FP + TN)).", ""]
    return "\n".join(lines)


def delong_comparison(name: str, model_a: tuple[str, str], model_b: tuple[str, str], pooled: pd.DataFrame) -> dict:
    """Paired DeLong test of two (family, method) models on the patients both predicted."""
    a = pooled[(pooled["family"] == model_a[0]) & (pooled["method"] == model_a[1])].set_index("patient_id")
    b = pooled[(pooled["family"] == model_b[0]) & (pooled["method"] == model_b[1])].set_index("patient_id")
    common = a.index.intersection(b.index)
    record = {"comparison": name, "model_a": " / ".join(model_a), "model_b": " / ".join(model_b),
              "n_patients": len(common), "auc_a": np.nan, "auc_b": np.nan, "z": np.nan, "p_value": np.nan}
    labels = a.loc[common, "label"].to_numpy()
    if _both_classes(labels):
        record["auc_a"], record["auc_b"] = (roc_auc_score(labels, frame.loc[common, "probability"]) for frame in (a, b))
        record["z"], record["p_value"] = delong_test(labels, a.loc[common, "probability"], b.loc[common, "probability"])
    return record
