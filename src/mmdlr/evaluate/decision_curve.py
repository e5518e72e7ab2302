"""Decision-curve analysis (Vickers & Elkin 2006): net benefit of acting on a model's probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd


def net_benefit(labels, probabilities, thresholds) -> np.ndarray:
    """Net benefit TP/n - FP/n * t/(1-t) of treating patients whose probability is >= t, per threshold t."""
    labels, probabilities = np.asarray(labels, bool), np.asarray(probabilities, float)
    thresholds = np.asarray(thresholds, float)
    n = len(labels)
    treat = probabilities[None, :] >= thresholds[:, None]
    true_positive = (treat & labels[None, :]).sum(axis=1) / n
    false_positive = (treat & ~labels[None, :]).sum(axis=1) / n
    return true_positive - false_positive * thresholds / (1 - thresholds)


def decision_curve(labels, probabilities, thresholds=np.linspace(0.01, 0.99, 99)) -> pd.DataFrame:
    """Net benefit of the model, of treating everyone and of treating no one, per threshold."""
    labels = np.asarray(labels, bool)
    return pd.DataFrame({
        "threshold": thresholds,
        "model": net_benefit(labels, probabilities, thresholds),
        "treat_all": net_benefit(labels, np.ones(len(labels)), thresholds),
        "treat_none": np.zeros(len(thresholds)),
    })
