"""ROC curves per feature family (paper Figure 6) and calibration curves (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve  # noqa: E402


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


def plot_calibration(pooled: pd.DataFrame, models: list[tuple[str, str]], path: Path, n_bins: int = 5) -> Path:
    """Reliability curves (quantile bins) of the given (family, method) models, Brier score in the legend."""
    figure, axis = plt.subplots(figsize=(5.5, 5))
    for family, method in models:
        frame = pooled[(pooled["family"] == family) & (pooled["method"] == method)]
        if not _both_classes(frame):
            continue
        observed, predicted = calibration_curve(frame["label"], frame["probability"], n_bins=n_bins,
                                                strategy="quantile")
        brier = brier_score_loss(frame["label"], frame["probability"])
        axis.plot(predicted, observed, marker="o", label=f"{family} / {method} (Brier {brier:.3f})")
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    axis.set(xlabel="Predicted probability of malignancy", ylabel="Observed fraction malignant",
             title="Calibration", xlim=(0, 1), ylim=(0, 1), xticks=np.linspace(0, 1, 6))
    axis.legend(loc="upper left", fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
