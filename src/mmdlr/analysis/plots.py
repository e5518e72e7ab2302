"""ROC curves per feature family (paper Figure 6), calibration and decision curves (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

from mmdlr.evaluate import logistic_calibration  # noqa: E402
from mmdlr.evaluate.decision_curve import decision_curve  # noqa: E402


def _both_classes(frame: pd.DataFrame) -> bool:
    return frame["label"].nunique() == 2


# Row kinds (mmdlr.analysis.grid) drawn together in one ROC panel, under this title.
ROC_GROUPS = {"single": "Single modality", "early": "Early fusion (features joined)",
              "combined": "Radiomic + deep features", "ensemble": "Late fusion", "stacking": "Late fusion"}
FAMILY_LABELS = {"radiomics": "Radiomics", "deep": "Deep features", "radiomics+deep": "Radiomics + deep"}
HIGHLIGHT = "#b2182b"
LIGHT = "#8c96a0"
LIGHT_STYLES = ("-", "--", ":", "-.")


def plot_roc(pooled: pd.DataFrame, rows: list[tuple[str, str]], title: str, path: Path, auc_name: str = "AUC") -> Path:
    """ROC curves of one family's (method, row kind) rows (pooled per-patient predictions), one panel per row
    group (``ROC_GROUPS``): the group's best model by AUC drawn thick in colour, the others thin and light.
    The legend gives the AUC of exactly these predictions under ``auc_name`` (the result tables' column that
    holds the same number)."""
    groups: dict[str, list[tuple[str, float, np.ndarray, np.ndarray]]] = {}
    for method, kind in rows:
        frame = pooled[pooled["method"] == method]
        if _both_classes(frame):
            fpr, tpr, _ = roc_curve(frame["label"], frame["probability"])
            auc = roc_auc_score(frame["label"], frame["probability"])
            groups.setdefault(ROC_GROUPS.get(kind, kind), []).append((method, auc, fpr, tpr))
    figure, axes = plt.subplots(1, max(1, len(groups)), figsize=(3.7 * max(1, len(groups)), 4.1), squeeze=False)
    for axis, (group, curves) in zip(axes[0], groups.items()):
        best = max(range(len(curves)), key=lambda index: curves[index][1])
        order = [index for index in range(len(curves)) if index != best] + [best]  # the best drawn on top
        for rank, index in enumerate(order):
            method, auc, fpr, tpr = curves[index]
            style = ({"color": HIGHLIGHT, "linewidth": 2.2} if index == best else
                     {"color": LIGHT, "linewidth": 1.0, "alpha": 0.8, "linestyle": LIGHT_STYLES[rank % 4]})
            axis.plot(fpr, tpr, label=f"{method}  {auc:.3f}", **style)
        axis.plot([0, 1], [0, 1], linestyle="--", color="#cccccc", linewidth=0.8)
        axis.set(xlabel="1 − specificity", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal")
        axis.set_title(group, fontsize=10)
        handles, labels = axis.get_legend_handles_labels()
        legend = axis.legend(handles[::-1], labels[::-1], loc="lower right", fontsize=7.5, title=auc_name,
                             title_fontsize=7.5, frameon=True)
        legend.get_texts()[0].set_fontweight("bold")
    axes[0][0].set_ylabel("Sensitivity")
    if not groups:
        axes[0][0].text(0.5, 0.5, "no model with both classes among its predictions", ha="center")
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=150)
    plt.close(figure)
    return path


# Threshold probabilities of malignancy over which a biopsy decision is weighed: from BI-RADS 4's
# lower bound (2%) to 50% (beyond it a model would send away lesions more likely malignant than not).
DECISION_THRESHOLDS = np.round(np.arange(0.02, 0.505, 0.01), 2)


def decision_curve_figure(predictions: pd.DataFrame, models: list[tuple[str, str]]) -> Figure | None:
    """Net benefit (Vickers & Elkin 2006) of the given (family, method) models over ``DECISION_THRESHOLDS``,
    each patient's probability averaged over the folds that tested them; None when no model has both classes.
    The y-axis spans every model's curve; only the treat-all reference may run below it."""
    curves = {}
    for family, method in models:
        chosen = predictions[(predictions["family"] == family) & (predictions["method"] == method)]
        if _both_classes(chosen):
            pooled = chosen.groupby("patient_id").agg(label=("label", "first"), probability=("probability", "mean"))
            curves[f"{FAMILY_LABELS.get(family, family)}: {method}"] = decision_curve(
                pooled["label"], pooled["probability"], DECISION_THRESHOLDS)
    if not curves:
        return None
    figure = Figure(figsize=(8.2, 4.2))
    axis = figure.subplots()
    for name, curve in curves.items():
        axis.plot(100 * curve["threshold"], curve["model"], linewidth=1.8, label=name)
    reference = next(iter(curves.values()))
    axis.plot(100 * reference["threshold"], reference["treat_all"], color="k", linestyle="--", linewidth=1,
              label="biopsy all")
    axis.plot(100 * reference["threshold"], reference["treat_none"], color="k", linestyle=":", linewidth=1,
              label="biopsy none")
    lowest = min(curve["model"].min() for curve in curves.values())
    top = max(reference["treat_all"].max(), max(curve["model"].max() for curve in curves.values()))
    axis.set(xlabel="Threshold probability of malignancy (%)", ylabel="Net benefit",
             xlim=(0, 100 * DECISION_THRESHOLDS[-1]), ylim=(min(-0.05, lowest - 0.02), top * 1.1 + 0.01))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    figure.tight_layout()
    return figure


def _repeat(fold: str) -> str:
    """Repeat of an outer fold name (``r2f3`` -> ``r2``); the hold-out test set is one repeat."""
    return fold.split("f", 1)[0] if fold.startswith("r") and "f" in fold else fold


def _reliability(frame: pd.DataFrame, n_bins: int) -> pd.DataFrame:
    """Mean predicted probability, observed fraction malignant and count per quantile bin."""
    bins = pd.qcut(frame["probability"], n_bins, duplicates="drop")
    return frame.groupby(bins, observed=True).agg(predicted=("probability", "mean"), observed=("label", "mean"),
                                                  count=("label", "size"))


def _interval_text(summary: dict, metric: str) -> str:
    value, (low, high, _) = summary[metric]
    return "n/a" if np.isnan(value) else f"{value:.2f} [{low:.2f}, {high:.2f}]"


def plot_calibration(predictions: pd.DataFrame, models: list[tuple[str, str]], path: Path,
                     groups: pd.Series | None = None, n_bins: int = 10) -> Path:
    """Reliability curves of the given (family, method) models, one panel each, from out-of-fold predictions.

    Every repeat's predictions (each patient once per repeat; never averaged over repeats) give one thin curve;
    the thick curve bins all repeats' predictions together (``n_bins`` quantile bins), each point annotated
    with its count, and a strip below shows how many predictions fall in each probability range by class.
    The panel title gives the calibration intercept and slope as in the result tables (all repeats stacked,
    cluster-robust by patient, or by ``groups``: each patient id's group).
    """
    shown = [(family, method, frame) for family, method in models
             if _both_classes(frame := predictions[(predictions["family"] == family)
                                                   & (predictions["method"] == method)])]
    columns = max(1, min(3, len(shown)))
    rows = max(1, -(-len(shown) // columns))
    figure = plt.figure(figsize=(4.2 * columns, 5.0 * rows))
    grid = figure.add_gridspec(2 * rows, columns, height_ratios=[4, 1] * rows)
    for index, (family, method, frame) in enumerate(shown):
        row, column = divmod(index, columns)
        axis = figure.add_subplot(grid[2 * row, column])
        strip = figure.add_subplot(grid[2 * row + 1, column], sharex=axis)
        repeats = frame["fold"].map(_repeat)
        for _, repeat in frame.groupby(repeats, sort=False):
            curve = _reliability(repeat, n_bins)
            axis.plot(curve["predicted"], curve["observed"], color="tab:blue", alpha=0.35, linewidth=0.8)
        curve = _reliability(frame, n_bins)
        axis.plot(curve["predicted"], curve["observed"], marker="o", color="tab:blue", linewidth=1.8,
                  label=f"all {repeats.nunique()} repeats (thin: each repeat)" if repeats.nunique() > 1 else "test set")
        for point in curve.itertuples():
            axis.annotate(str(point.count), (point.predicted, point.observed), textcoords="offset points",
                          xytext=(0, 6), ha="center", fontsize=6)
        clusters = frame["patient_id"] if groups is None else frame["patient_id"].map(groups)
        summary = logistic_calibration(frame["label"], frame["probability"], clusters)
        axis.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
        axis.set(ylabel="Observed fraction malignant", xlim=(0, 1), ylim=(-0.02, 1.08),
                 title=f"{FAMILY_LABELS.get(family, family)}: {method}\nintercept "
                       f"{_interval_text(summary, 'cal_intercept')}, slope {_interval_text(summary, 'cal_slope')}")
        axis.title.set_fontsize(8)
        axis.legend(loc="upper left", fontsize=7, title="numbers: predictions per bin", title_fontsize=6)
        axis.tick_params(labelbottom=False)
        edges = np.linspace(0, 1, 21)
        for label, colour in ((0, "tab:green"), (1, "tab:red")):
            strip.hist(frame.loc[frame["label"] == label, "probability"], bins=edges, color=colour, alpha=0.6,
                       label="malignant" if label else "benign")
        strip.set(xlabel="Predicted probability of malignancy", ylabel="predictions", xlim=(0, 1),
                  xticks=np.linspace(0, 1, 6))
        strip.legend(fontsize=6, loc="upper center", ncol=2)
    if not shown:
        figure.text(0.5, 0.5, "no model with both classes among its predictions", ha="center")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
