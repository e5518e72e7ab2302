"""Calibration-in-the-large and calibration slope by logistic recalibration (Cox 1958), with Wald intervals.

For predicted probabilities p and outcomes y (Van Calster et al. 2016, J Clin Epidemiol 74:167-176; 2019,
BMC Med 17:230): the calibration intercept is ``a`` in ``logit P(y=1) = a + logit(p)`` (logit(p) an offset;
0 when the mean prediction matches the event rate), the calibration slope is ``b`` in
``logit P(y=1) = a' + b logit(p)`` (1 when the predictions are neither too extreme, b < 1, nor too modest,
b > 1). p is clipped to [1e-6, 1 - 1e-6] before the logit, so a probability of exactly 0 or 1 (trees, KNN)
gives a finite linear predictor. Both are binomial GLMs fitted with statsmodels.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.special import logit

from mmdlr.evaluate.interval import NAN, Interval

PROBABILITY_CLIP = 1e-6


def _fit(y: np.ndarray, design: np.ndarray, offset: np.ndarray | None, clusters: np.ndarray | None) -> tuple:
    """First coefficient of a binomial GLM and its Wald 95% interval (cluster-robust with ``clusters``)."""
    import statsmodels.api as sm  # here, not with the module: 0.4 s that the analysis grid's workers never need
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    covariance = {} if clusters is None else {"cov_type": "cluster", "cov_kwds": {"groups": clusters}}
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            result = sm.GLM(y, design, family=sm.families.Binomial(), offset=offset).fit(**covariance)
        except (PerfectSeparationWarning, ConvergenceWarning) as warning:
            return NAN, Interval(NAN, NAN, f"did not converge ({type(warning).__name__})")
    low, high = result.conf_int()[-1]
    return float(result.params[-1]), Interval(float(low), float(high))


def logistic_calibration(y, probability, clusters=None) -> dict[str, tuple[float, Interval]]:
    """``{"cal_intercept": (a, CI), "cal_slope": (b, CI)}`` of the predictions (see the module docstring).

    ``clusters`` (one label per prediction: a patient or its group) makes the Wald intervals cluster-robust
    (sandwich) where some cluster holds more than one prediction, as when every patient is predicted once per
    repeat of a cross-validation; otherwise they are model-based. An estimate that does not exist is NaN with
    the reason in the interval's note: one class only, all predictions equal, or (slope) predictions that
    separate the classes perfectly (the slope is infinite).
    """
    y = np.asarray(y, dtype=float)
    linear = logit(np.clip(np.asarray(probability, dtype=float), PROBABILITY_CLIP, 1 - PROBABILITY_CLIP))
    if len(np.unique(y)) < 2:
        undefined = (NAN, Interval(NAN, NAN, "undefined: one class only"))
        return {"cal_intercept": undefined, "cal_slope": undefined}
    codes = None
    if clusters is not None:
        codes = pd.factorize(pd.Series(clusters).astype(str))[0]
        codes = codes if np.bincount(codes).max() > 1 else None
    intercept = _fit(y, np.ones((len(y), 1)), linear, codes)
    if np.ptp(linear) == 0:
        slope = (NAN, Interval(NAN, NAN, "undefined: all predictions equal"))
    elif linear[y == 0].max() <= linear[y == 1].min():
        slope = (NAN, Interval(NAN, NAN, "undefined: the predictions separate the classes perfectly (infinite)"))
    else:
        slope = _fit(y, np.column_stack([np.ones_like(linear), linear]), None, codes)
    return {"cal_intercept": intercept, "cal_slope": slope}
