"""ROC curves per feature family (paper Figure 6) and calibration curves (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

from mmdlr.evaluate import logistic_calibration  # noqa: E402


def _both_classes(frame: pd.DataFrame) -> bool:
    return frame["label"].nunique() == 2


def plot_roc(pooled: pd.DataFrame, methods: list[str], title: str, path: Path, auc_name: str = "AUC") -> Path:
    """One ROC curve per method (pooled per-patient predictions of one family); the legend gives the AUC of
    exactly these predictions under ``auc_name`` (the result tables' column that holds the same number)."""
    figure, axis = plt.subplots(figsize=(5.5, 5))
    for method in methods:
        frame = pooled[pooled["method"] == method]
        if not _both_classes(frame):
            continue
        fpr, tpr, _ = roc_curve(frame["label"], frame["probability"])
        axis.plot(fpr, tpr, label=f"{method} ({auc_name} {roc_auc_score(frame['label'], frame['probability']):.3f})")
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    axis.set(xlabel="1 - specificity (false-positive rate)", ylabel="Sensitivity (true-positive rate)",
             title=title, xlim=(0, 1), ylim=(0, 1.01))
    axis.legend(loc="lower right", fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


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
                 title=f"{family} / {method}\nintercept {_interval_text(summary, 'cal_intercept')}, "
                       f"slope {_interval_text(summary, 'cal_slope')}")
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
