"""Confidence intervals on a fixed test set that stay informative at 0 and 1: Wilson for proportions,
logit-transformed DeLong for the AUC with Newcombe's score interval where the logit is undefined.

Every function returns an :class:`Interval`; an interval that cannot be computed is (NaN, NaN) with the
reason in ``note``, never a made-up [0, 1].
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit, logit
from scipy.stats import binomtest, norm
from sklearn.metrics import roc_auc_score

from mmdlr.evaluate.delong import delong_auc_variance

NAN = float("nan")


class Interval(NamedTuple):
    """(low, high) bounds and, when they are NaN or come from a fallback method, why."""

    low: float
    high: float
    note: str = ""


def wilson_ci(successes: int, trials: int, alpha: float = 0.05) -> Interval:
    """Wilson (1927) score interval of ``successes / trials`` (scipy ``binomtest(...).proportion_ci``).

    Chosen over Clopper–Pearson (1934): its coverage is close to nominal for every n and p, where the
    exact interval is conservative (Brown, Cai & DasGupta 2001, Statist. Sci. 16:101–133), and it never
    collapses at 0 or 1 (42/42 gives [0.916, 1]).
    """
    if trials == 0:
        return Interval(NAN, NAN, "undefined: no cases")
    interval = binomtest(int(successes), int(trials)).proportion_ci(1 - alpha, method="wilson")
    return Interval(float(interval.low), float(interval.high))


def newcombe_auc_ci(auc: float, positives: int, negatives: int, alpha: float = 0.05) -> Interval:
    """Newcombe's (2006) method 5 score interval for an AUC: the theta with |auc - theta| = z sqrt(V(theta)).

    V is Hanley & McNeil's (1982) variance with both class sizes replaced by their mean N* = (m + n) / 2:
    V(theta) = theta (1 - theta) [1 + (N* - 1) ((1 - theta) / (2 - theta) + theta / (1 + theta))] / (m n).
    Like Wilson's interval it is informative at AUC 0 or 1 (Newcombe 2006, Stat. Med. 25:559–573).
    """
    if auc < 0.5:  # V is symmetric in theta <-> 1 - theta; solve on the upper side, where no bound underflows
        low, high, _ = newcombe_auc_ci(1 - auc, positives, negatives, alpha)
        return Interval(1 - high, 1 - low)
    z = norm.ppf(1 - alpha / 2)
    pairs, n_star = positives * negatives, (positives + negatives) / 2

    def score(theta: float) -> float:
        variance = theta * (1 - theta) * (1 + (n_star - 1) * ((1 - theta) / (2 - theta) + theta / (1 + theta))) / pairs
        return (auc - theta) ** 2 - z ** 2 * variance

    low = brentq(score, 0.0, np.nextafter(auc, 0.0))
    high = 1.0 if auc >= 1 else brentq(score, np.nextafter(auc, 1.0), 1.0)
    return Interval(float(low), float(high))


def auc_ci(y_true, score, alpha: float = 0.05) -> tuple[float, Interval]:
    """(AUC, interval): DeLong (1988) variance on the logit scale, back-transformed (Pepe 2003, p. 107;
    Qin & Hotilovac 2008, Stat. Methods Med. Res. 17:207–221), so the bounds stay inside (0, 1).

    Where the AUC is 0 or 1, or the DeLong variance is 0 (logit undefined, normal interval of zero width),
    Newcombe's score interval (:func:`newcombe_auc_ci`) is used and named in ``note``. NaN with the reason
    when the test set holds one class, or fewer than two cases of a class (DeLong variance undefined).
    """
    y_true = np.asarray(y_true).astype(int)
    positives, negatives = int((y_true == 1).sum()), int((y_true == 0).sum())
    if positives == 0 or negatives == 0:
        return NAN, Interval(NAN, NAN, f"AUC undefined: only {'benign' if positives == 0 else 'malignant'} cases")
    if min(positives, negatives) < 2:
        reason = (f"AUC CI undefined: DeLong variance needs 2 cases per class ({positives} malignant, "
                  f"{negatives} benign)")
        return float(roc_auc_score(y_true, score)), Interval(NAN, NAN, reason)
    auc, variance = delong_auc_variance(y_true, score)
    if 0 < auc < 1 and variance > 0:
        half_width = norm.ppf(1 - alpha / 2) * np.sqrt(variance) / (auc * (1 - auc))
        return auc, Interval(float(expit(logit(auc) - half_width)), float(expit(logit(auc) + half_width)))
    reason = f"AUC = {auc:.3f}" if auc in (0, 1) else "DeLong variance 0"
    return auc, newcombe_auc_ci(auc, positives, negatives, alpha)._replace(
        note=f"{reason}: Newcombe (2006) score interval for the AUC")
