"""Decision curve against hand-computed net benefit."""

import numpy as np

from mmdlr.evaluate.decision_curve import decision_curve, net_benefit


def test_net_benefit_by_hand():
    labels = [1, 1, 0, 0, 0]
    probabilities = [0.9, 0.4, 0.6, 0.2, 0.1]
    # t = 0.5: treat {0.9, 0.6}: TP 1, FP 1 -> 1/5 - 1/5 * 1 = 0
    # t = 0.3: treat {0.9, 0.4, 0.6}: TP 2, FP 1 -> 2/5 - 1/5 * 0.3/0.7
    np.testing.assert_allclose(net_benefit(labels, probabilities, [0.5, 0.3]), [0.0, 0.4 - 0.2 * 3 / 7])


def test_curve_reference_strategies():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    curve = decision_curve(labels, np.where(labels == 1, 0.95, 0.05))
    prevalence = labels.mean()
    row = curve.iloc[(curve["threshold"] - 0.2).abs().argmin()]
    assert np.isclose(row["treat_all"], prevalence - (1 - prevalence) * row["threshold"] / (1 - row["threshold"]))
    assert (curve["model"] >= curve["treat_all"] - 1e-12).all()  # a perfect model never does worse
    assert np.isclose(row["model"], prevalence)
