"""Model comparisons fixed before the test data are seen, and the exploratory rest with Holm's correction.

Pre-specified comparisons are the config's ``comparisons`` (pairs of ``family/method``). Every other pair
of a fusion row and a single-modality row is exploratory. Each comparison gets DeLong's paired test on
the pooled test predictions; under nested CV also the paired fold-wise AUC difference with the
Nadeau-Bengio corrected resampled t (the resampling the tables' intervals use). p-values are adjusted
with Holm's method within each of the two sets (statsmodels ``multipletests``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests

from mmdlr.analysis.grid import SINGLE, GridRow
from mmdlr.evaluate import corrected_t_test, delong_test

PRESPECIFIED, EXPLORATORY = "pre-specified", "exploratory"
COLUMNS = ["comparison", "kind", "model_a", "model_b", "n_patients", "auc_a", "auc_b", "delong_z", "delong_p",
           "delong_p_holm", "n_folds", "fold_auc_difference", "fold_difference_low", "fold_difference_high",
           "corrected_t_p", "corrected_t_p_holm", "note"]
Model = tuple[str, str]


def model_name(model: Model) -> str:
    return "/".join(model)


def planned_comparisons(rows: list[GridRow], prespecified: list[list[str]]) -> list[tuple[str, Model, Model]]:
    """(kind, model a, model b): the config's pairs first, then every fusion row against every single-modality
    row of its own family (the combined family against the single rows of every family)."""
    pairs = [(PRESPECIFIED, tuple(a.split("/", 1)), tuple(b.split("/", 1))) for a, b in prespecified]
    singles = [row for row in rows if row.kind == SINGLE]
    seen = {frozenset((a, b)) for _, a, b in pairs}
    for row in rows:
        if row.kind == SINGLE:
            continue
        for single in singles:
            if single.family == row.family or row.family == "radiomics+deep":
                a, b = (row.family, row.method), (single.family, single.method)
                if frozenset((a, b)) not in seen:
                    seen.add(frozenset((a, b)))
                    pairs.append((EXPLORATORY, a, b))
    return pairs


def _fold_differences(predictions: pd.DataFrame, a: Model, b: Model) -> list[float]:
    """AUC(a) - AUC(b) on each outer fold's test patients that both models predicted (two-class folds only)."""
    differences = []
    for _, fold in predictions.groupby("fold", sort=False):
        both = [fold[(fold["family"] == m[0]) & (fold["method"] == m[1])].set_index("patient_id") for m in (a, b)]
        common = both[0].index.intersection(both[1].index)
        labels = both[0].loc[common, "label"]
        if labels.nunique() == 2:
            differences.append(roc_auc_score(labels, both[0].loc[common, "probability"])
                               - roc_auc_score(labels, both[1].loc[common, "probability"]))
    return differences


def compare(kind: str, a: Model, b: Model, pooled: pd.DataFrame, predictions: pd.DataFrame,
            outer_folds: int | None) -> dict:
    """One comparison: DeLong on the pooled predictions; with ``outer_folds`` (nested CV) also the corrected
    resampled t on the fold-wise paired AUC differences."""
    record = dict.fromkeys(COLUMNS, np.nan) | {"comparison": f"{model_name(a)} vs {model_name(b)}", "kind": kind,
                                               "model_a": model_name(a), "model_b": model_name(b), "note": ""}
    frames = [pooled[(pooled["family"] == m[0]) & (pooled["method"] == m[1])].set_index("patient_id") for m in (a, b)]
    absent = [model_name(m) for m, frame in zip((a, b), frames) if frame.empty]
    if absent:
        return record | {"n_patients": 0, "note": f"not in this run: {', '.join(absent)}"}
    common = frames[0].index.intersection(frames[1].index)
    labels = frames[0].loc[common, "label"].to_numpy()
    record["n_patients"] = len(common)
    if len(np.unique(labels)) < 2:
        return record | {"note": "the patients both models predicted hold one class"}
    scores = [frame.loc[common, "probability"].to_numpy() for frame in frames]
    record["auc_a"], record["auc_b"] = (roc_auc_score(labels, s) for s in scores)
    record["delong_z"], record["delong_p"] = delong_test(labels, *scores)
    if outer_folds:
        differences = _fold_differences(predictions, a, b)
        test = corrected_t_test(differences, 1 / (outer_folds - 1))
        record.update(n_folds=len(differences), fold_auc_difference=test.mean, fold_difference_low=test.low,
                      fold_difference_high=test.high, corrected_t_p=test.p_value)
    return record


def comparison_table(rows: list[GridRow], prespecified: list[list[str]], pooled: pd.DataFrame,
                     predictions: pd.DataFrame, outer_folds: int | None) -> pd.DataFrame:
    """Every planned comparison with its tests and Holm-adjusted p-values within its kind."""
    table = pd.DataFrame([compare(kind, a, b, pooled, predictions, outer_folds)
                          for kind, a, b in planned_comparisons(rows, prespecified)], columns=COLUMNS)
    for kind in (PRESPECIFIED, EXPLORATORY):
        for column in ("delong_p", "corrected_t_p"):
            chosen = (table["kind"] == kind) & table[column].notna()
            if chosen.any():
                table.loc[chosen, f"{column}_holm"] = multipletests(table.loc[chosen, column], method="holm")[1]
    return table


def shown_models(rows: list[GridRow], prespecified: list[list[str]]) -> list[Model]:
    """The models the calibration plot and the decision curve show, fixed without the test data: those of the
    pre-specified comparisons, else each family's stacking row (its first row where it has none)."""
    if prespecified:
        return list(dict.fromkeys(tuple(name.split("/", 1)) for pair in prespecified for name in pair))
    shown = {}
    for row in rows:
        if row.family not in shown or row.method == "Stacking":
            shown[row.family] = (row.family, row.method)
    return list(shown.values())
