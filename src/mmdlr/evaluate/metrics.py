"""Point metrics of a binary classifier and the training-only Youden threshold.

Specificity is TN / (TN + FP). The paper's Eq. 3 prints FP / (FP + TN), which is the false-positive
rate (1 - specificity); its tables report true specificities, so we follow the standard definition.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, brier_score_loss, recall_score, roc_auc_score, roc_curve


def sensitivity(y_true, y_pred) -> float:
    """TP / (TP + FN)."""
    return float(recall_score(y_true, y_pred, pos_label=1, zero_division=np.nan))


def specificity(y_true, y_pred) -> float:
    """TN / (TN + FP)."""
    return float(recall_score(y_true, y_pred, pos_label=0, zero_division=np.nan))


def binary_metrics(y_true, probability, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, AUC, sensitivity, specificity (prediction = probability >= threshold) and Brier score.

    AUC is NaN when ``y_true`` holds a single class.
    """
    y_true = np.asarray(y_true).astype(int)
    probability = np.asarray(probability, dtype=float)
    y_pred = (probability >= threshold).astype(int)
    both_classes = len(np.unique(y_true)) == 2
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "auc": float(roc_auc_score(y_true, probability)) if both_classes else float("nan"),
        "sensitivity": sensitivity(y_true, y_pred),
        "specificity": specificity(y_true, y_pred),
        "brier": float(brier_score_loss(y_true, probability, labels=[0, 1])),
    }


def proportion_counts(y_true, probability, threshold: float = 0.5) -> dict[str, tuple[int, int]]:
    """(successes, trials) behind accuracy, sensitivity and specificity (prediction = probability >= threshold)."""
    y_true = np.asarray(y_true).astype(int)
    correct = (np.asarray(probability, dtype=float) >= threshold).astype(int) == y_true
    positive = y_true == 1
    return {"accuracy": (int(correct.sum()), len(y_true)),
            "sensitivity": (int(correct[positive].sum()), int(positive.sum())),
            "specificity": (int(correct[~positive].sum()), int((~positive).sum()))}


def youden_threshold(y_true, probability) -> float:
    """Probability cut-off maximising sensitivity + specificity - 1; use on training (OOF) data only."""
    fpr, tpr, thresholds = roc_curve(y_true, probability)
    best = np.argmax(tpr - fpr)
    return float(min(thresholds[best], 1.0))
