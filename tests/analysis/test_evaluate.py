"""Metrics, DeLong, resampled-t intervals, the result rows' intervals and notes, and the train/test protocols."""

from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from scipy.special import expit, logit
from scipy.stats import norm, t
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, confusion_matrix, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

import mmdlr.evaluate.splits as splits_module
from mmdlr.analysis import plots
from mmdlr.analysis.grid import SINGLE, GridRow
from mmdlr.analysis.summary import holdout_row, markdown_table, nested_row, result_table
from mmdlr.evaluate import (
    PROBABILITY_CLIP,
    OneClassFoldError,
    StratifiedFoldsWithGroups,
    auc_ci,
    binary_metrics,
    corrected_t_ci,
    delong_auc_variance,
    delong_test,
    holdout_fold,
    logistic_calibration,
    proportion_counts,
    repeated_folds,
    require_both_classes,
    sensitivity,
    specificity,
    youden_threshold,
)


def _brute_force_delong_variance(y, score):
    """DeLong et al. 1988 straight from the definition (O(m n) kernel matrix)."""
    positives, negatives = score[y == 1], score[y == 0]
    psi = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return psi.mean(), v10.var(ddof=1) / len(positives) + v01.var(ddof=1) / len(negatives)


def test_sensitivity_specificity_on_hand_confusion_matrix():
    # TP = 3, FN = 1, TN = 4, FP = 2
    y_true = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    y_pred = [1, 1, 1, 0, 0, 0, 0, 0, 1, 1]
    tn, fp, fn, tp = confusion_matrix(y_true, y_pred).ravel()
    assert (tp, fn, tn, fp) == (3, 1, 4, 2)
    assert sensitivity(y_true, y_pred) == pytest.approx(3 / 4)
    assert specificity(y_true, y_pred) == pytest.approx(4 / 6)  # TN / (TN + FP), not the paper's FP / (FP + TN)


def test_binary_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    p = np.clip(0.3 * y + rng.random(50) * 0.7, 0, 1)
    metrics = binary_metrics(y, p, threshold=0.4)
    assert metrics["auc"] == pytest.approx(roc_auc_score(y, p))
    assert metrics["brier"] == pytest.approx(brier_score_loss(y, p))
    assert metrics["accuracy"] == pytest.approx(np.mean((p >= 0.4) == y))
    assert np.isnan(binary_metrics([1, 1], [0.2, 0.9])["auc"])


def test_delong_variance_hand_example():
    # positives 0.35, 0.8; negatives 0.1, 0.4: V10 = (0.5, 1), V01 = (1, 0.5) -> var = 0.125/2 + 0.125/2
    y = np.array([0, 0, 1, 1])
    auc, variance = delong_auc_variance(y, np.array([0.1, 0.4, 0.35, 0.8]))
    assert auc == pytest.approx(0.75)
    assert variance == pytest.approx(0.125)


def test_fast_delong_matches_definition_with_ties():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 40)
    score = np.round(y * 0.8 + rng.normal(size=40), 1)  # rounding creates ties
    auc, variance = delong_auc_variance(y, score)
    expected_auc, expected_variance = _brute_force_delong_variance(y, score)
    assert auc == pytest.approx(roc_auc_score(y, score)) == pytest.approx(expected_auc)
    assert variance == pytest.approx(expected_variance)


def test_paired_delong_identical_predictions_p_one_and_different_small_p():
    rng = np.random.default_rng(4)
    y = np.r_[np.zeros(100), np.ones(100)].astype(int)
    good = 2 * y + rng.normal(size=200)
    z, p = delong_test(y, good, good)
    assert (z, p) == (0.0, 1.0)
    z, p = delong_test(y, good, rng.normal(size=200))
    assert z > 0 and p < 1e-6
    assert delong_test(y, good, good + 1e-9 * rng.normal(size=200))[1] > 0.9


def test_logit_delong_coverage_on_simulated_binormal_data():
    """95% CIs cover the true AUC (binormal, d' = 1) in roughly 90-99% of 200 simulated studies."""
    rng = np.random.default_rng(11)
    true_auc = norm.cdf(1 / np.sqrt(2))
    covered = 0
    for _ in range(200):
        y = np.r_[np.zeros(40), np.ones(40)].astype(int)
        _, (low, high, _) = auc_ci(y, y + rng.normal(size=80))
        covered += low <= true_auc <= high
    assert 0.88 <= covered / 200 <= 0.99


def test_corrected_t_ci_formula():
    values = np.array([0.7, 0.8, 0.75, 0.9, 0.65])
    mean, low, high = corrected_t_ci(values, test_train_ratio=1 / 4)
    half = t.ppf(0.975, 4) * np.sqrt((1 / 5 + 1 / 4) * values.var(ddof=1))
    assert (mean, low, high) == pytest.approx((values.mean(), values.mean() - half, values.mean() + half))
    naive = t.ppf(0.975, 4) * values.std(ddof=1) / np.sqrt(5)
    assert high - mean > naive  # wider than the uncorrected t interval
    assert corrected_t_ci([0.8, np.nan, 0.6], 0.25)[0] == pytest.approx(0.7)


def test_corrected_t_ci_has_no_zero_width_interval():
    mean, low, high = corrected_t_ci([1.0, 1.0, np.nan, 1.0], 0.25)
    assert mean == 1.0 and np.isnan(low) and np.isnan(high)


def test_proportion_counts_match_the_confusion_matrix():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.3, 0.2, 0.4, 0.6, 0.5])
    tn, fp, fn, tp = confusion_matrix(y, p >= 0.5).ravel()
    assert proportion_counts(y, p, 0.5) == {"accuracy": (tp + tn, 10), "sensitivity": (tp, 4), "specificity": (tn, 6)}


def test_youden_threshold_separates_perfectly_separable_training_scores():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    threshold = youden_threshold(y, p)
    assert 0.3 < threshold <= 0.6
    assert ((p >= threshold) == y).all()


def _predictions(labels, probabilities, fold="holdout", ids=None):
    ids = [f"P{i:02d}" for i in range(len(labels))] if ids is None else ids
    return pd.DataFrame({"patient_id": ids, "fold": fold, "label": labels, "probability": probabilities,
                         "threshold": 0.5, "classifier": "LR"})


def test_holdout_row_perfect_test_set_keeps_honest_intervals():
    labels = np.r_[np.zeros(30), np.ones(12)].astype(int)
    row = holdout_row(_predictions(labels, 0.2 + 0.6 * labels), n_boot=200, seed=0)
    assert row["accuracy"] == 1.0 and row["accuracy_low"] == pytest.approx(0.916, abs=5e-4)
    assert row["sensitivity_low"] == pytest.approx(12 / (12 + norm.ppf(0.975) ** 2))  # Wilson at 12/12
    assert row["auc"] == 1.0 and 0.8 < row["auc_low"] < 1.0 and "Newcombe" in row["ci_note"]
    assert "Wilson" in row["ci_method"] and "logit" in row["ci_method"] and "groups" in row["ci_method"]


def test_holdout_row_undefined_intervals_are_nan_with_reasons_in_the_table():
    row = holdout_row(_predictions([0, 0, 0, 0, 1], [0.1, 0.2, 0.6, 0.3, 0.9]), n_boot=200, seed=0)
    assert np.isnan(row["auc_low"]) and np.isnan(row["auc_high"]) and "1 malignant" in row["ci_note"]
    assert np.isnan(row["brier_low"]) and "bootstrap needs 2 groups" in row["ci_note"]
    table = result_table([GridRow("radiomics", "US", SINGLE, ())], {("radiomics", "US"): row})
    assert table.loc[0, "AUC [95% CI]"] == "1.000" and table.loc[0, "ci_note"] == row["ci_note"]
    assert "\n* US: AUC CI undefined: DeLong variance needs 2 cases per class" in markdown_table(table, "Table")


def test_holdout_row_bootstraps_groups_and_says_when_the_test_set_holds_them():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.r_[np.zeros(25), np.ones(15)].astype(int), 3)
    probabilities = np.repeat(np.clip(0.3 * labels[::3] + 0.7 * rng.random(40), 0, 1), 3)
    frame = _predictions(labels, probabilities)
    groups = pd.Series(np.repeat(np.arange(40), 3).astype(str), index=frame["patient_id"])
    grouped = holdout_row(frame, n_boot=500, seed=0, groups=groups)
    independent = holdout_row(frame, n_boot=500, seed=0)
    assert (grouped["brier_high"] - grouped["brier_low"]) > 1.4 * (independent["brier_high"] - independent["brier_low"])
    assert "120 test patients share 40 groups" in grouped["ci_note"] and independent["ci_note"] == ""


def test_nested_row_perfect_in_every_fold_falls_back_to_score_intervals():
    labels = np.r_[np.zeros(30), np.ones(20)].astype(int)
    ids = [f"P{i:02d}" for i in range(50)]
    folds = [_predictions(labels[k::5], 0.1 + 0.8 * labels[k::5], f"r{r}f{k}", ids[k::5])
             for r in (1, 2) for k in range(5)]
    row = nested_row(pd.concat(folds), outer_folds=5, repeats=2, n_boot=200, seed=0)
    assert row["accuracy"] == 1.0 and row["accuracy_low"] == pytest.approx(50 / (50 + norm.ppf(0.975) ** 2))
    assert row["auc"] == 1.0 and 0.8 < row["auc_low"] < 1.0
    assert "accuracy 1.000 in all 10 folds: Wilson" in row["ci_note"]
    assert "auc 1.000 in all 10 folds: Newcombe" in row["ci_note"]
    assert row["pooled_auc"] == 1.0 and row["pooled_auc_low"] < 1.0 and "pooled OOF AUC = 1.000" in row["ci_note"]


def _cohort(n=50, groups=None):
    ids = pd.Index([f"P{i:02d}" for i in range(n)])
    labels = pd.Series(np.arange(n) % 2, index=ids)
    groups = pd.Series(groups if groups is not None else [""] * n, index=ids)
    return labels, groups


def test_holdout_uses_split_column_when_present():
    labels, groups = _cohort(10)
    split = pd.Series(["train"] * 8 + ["test"] * 2, index=labels.index)
    fold = holdout_fold(labels, groups, split)
    assert fold.test == ("P08", "P09") and len(fold.train) == 8
    with pytest.raises(ValueError, match="train' or 'test"):
        holdout_fold(labels, groups, split.where(split == "test", ""))


def test_holdout_is_stratified_seeded_and_keeps_groups_together():
    group_ids = [f"g{i // 3}" for i in range(60)]
    labels, groups = _cohort(60, group_ids)
    labels[:] = [i // 3 % 2 for i in range(60)]  # one label per group
    empty = pd.Series("", index=labels.index)
    fold = holdout_fold(labels, groups, empty, test_size=0.2, seed=42)
    assert fold == holdout_fold(labels, groups, empty, test_size=0.2, seed=42)
    assert set(groups[list(fold.train)]).isdisjoint(groups[list(fold.test)])
    assert len(fold.test) == pytest.approx(12, abs=3)
    assert labels[list(fold.test)].mean() == pytest.approx(0.5, abs=0.15)


def test_repeated_folds_cover_every_patient_once_per_repeat():
    labels, groups = _cohort(30, [f"g{i // 2}" for i in range(30)])
    folds = repeated_folds(labels, groups, n_splits=3, repeats=2, seed=0)
    assert [f.name for f in folds] == ["r1f1", "r1f2", "r1f3", "r2f1", "r2f2", "r2f3"]
    for repeat in (folds[:3], folds[3:]):
        assert sorted(p for fold in repeat for p in fold.test) == sorted(labels.index)
    for fold in folds:
        assert set(groups[list(fold.train)]).isdisjoint(groups[list(fold.test)])


@pytest.mark.parametrize("grouped", [False, True])
def test_inner_folds_are_scikit_learns_kept_read_only_and_made_once_per_labels_and_groups(grouped, monkeypatch):
    rng = np.random.default_rng(1)
    y, groups = rng.integers(0, 2, 90), (rng.integers(0, 40, 90) if grouped else None)
    splitter = StratifiedGroupKFold if grouped else StratifiedKFold
    expected = list(splitter(3, shuffle=True, random_state=7).split(np.zeros(90), y, groups))
    made = []
    monkeypatch.setattr(splits_module, "_SPLITS", OrderedDict())  # nothing from other tests
    monkeypatch.setattr(splitter, "split", lambda self, *args: made.append(1) or iter(expected))
    folds = StratifiedFoldsWithGroups(3, 7)
    for _ in range(3):
        splits = list(folds.split(np.zeros((90, 2)), y, groups))
        for (train, test), (want_train, want_test) in zip(splits, expected, strict=True):
            np.testing.assert_array_equal(train, want_train)
            np.testing.assert_array_equal(test, want_test)
            assert not train.flags.writeable and not test.flags.writeable
    list(folds.split(np.zeros(90), y.astype(float), groups))  # the same classes (LASSO's y is float)
    assert len(made) == 1
    list(StratifiedFoldsWithGroups(3, 8).split(np.zeros(90), y, groups))  # another seed,
    list(folds.split(np.zeros(90), 1 - y, groups))  # other labels
    assert len(made) == 3


def test_one_class_training_fold_error_names_the_fold():
    with pytest.raises(OneClassFoldError, match="fold r1f2.*only class 1"):
        require_both_classes([1, 1, 1], "radiomics / US, fold r1f2")


def _miscalibrated(n, intercept, slope, seed=0):
    """Predictions p and outcomes drawn from logit P(y=1) = intercept + slope * logit(p)."""
    rng = np.random.default_rng(seed)
    linear = rng.normal(0, 1.5, n)
    return (rng.random(n) < expit(intercept + slope * linear)).astype(int), expit(linear)


def test_calibration_intercept_and_slope_solve_their_score_equations_with_wald_intervals():
    y, p = _miscalibrated(3000, 0.4, 0.6)
    result = logistic_calibration(y, p)
    linear = logit(p)
    a = brentq(lambda a: np.sum(y - expit(a + linear)), -5, 5)  # intercept with logit(p) as offset
    se = 1 / np.sqrt(np.sum(expit(a + linear) * (1 - expit(a + linear))))
    value, interval = result["cal_intercept"]
    assert value == pytest.approx(a, abs=1e-6)
    assert (interval.low, interval.high) == pytest.approx((a - norm.ppf(0.975) * se, a + norm.ppf(0.975) * se),
                                                          abs=1e-6)
    reference = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(linear[:, None], y)
    slope, slope_interval = result["cal_slope"]
    assert slope == pytest.approx(reference.coef_[0, 0], abs=1e-4) and slope_interval.low < 0.6 < slope_interval.high
    perfect = logistic_calibration(*_miscalibrated(3000, 0.0, 1.0, seed=1))
    assert perfect["cal_intercept"][1].low < 0 < perfect["cal_intercept"][1].high
    assert perfect["cal_slope"][1].low < 1 < perfect["cal_slope"][1].high


def test_calibration_clips_probabilities_and_names_what_is_undefined():
    y = np.array([0, 0, 1, 1, 0, 1])
    clipped = logistic_calibration(y, [0.0, 0.3, 1.0, 0.6, 0.7, 0.2])
    assert np.isfinite(clipped["cal_intercept"][0]) and np.isfinite(clipped["cal_slope"][0])
    assert clipped["cal_slope"] == logistic_calibration(y, [PROBABILITY_CLIP, 0.3, 1 - PROBABILITY_CLIP, 0.6, 0.7,
                                                           0.2])["cal_slope"]
    separated = logistic_calibration([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert np.isnan(separated["cal_slope"][0]) and "separate the classes perfectly" in separated["cal_slope"][1].note
    assert np.isfinite(separated["cal_intercept"][0])
    assert "one class only" in logistic_calibration([1, 1, 1], [0.2, 0.5, 0.9])["cal_slope"][1].note
    assert "all predictions equal" in logistic_calibration([0, 1, 0], [0.4, 0.4, 0.4])["cal_slope"][1].note


def test_calibration_of_repeated_predictions_clusters_by_patient():
    """Each patient predicted once per repeat: the stacked fit clusters by patient, so three identical repeats
    give about the single repeat's interval, not one sqrt(3) times too narrow."""
    y, p = _miscalibrated(600, 0.3, 0.8, seed=2)
    patients = np.arange(600)
    single = logistic_calibration(y, p, clusters=patients)  # one prediction per cluster: model-based
    stacked = logistic_calibration(np.tile(y, 3), np.tile(p, 3), clusters=np.tile(patients, 3))
    naive = logistic_calibration(np.tile(y, 3), np.tile(p, 3))
    for metric in ("cal_intercept", "cal_slope"):
        width = {name: result[metric][1].high - result[metric][1].low
                 for name, result in (("single", single), ("stacked", stacked), ("naive", naive))}
        assert stacked[metric][0] == pytest.approx(single[metric][0])
        assert width["stacked"] == pytest.approx(width["single"], rel=0.15)
        assert width["naive"] == pytest.approx(width["single"] / np.sqrt(3), rel=0.15)


def test_result_rows_report_calibration_per_repeat_out_of_fold_predictions():
    y, p = _miscalibrated(100, 0.0, 1.0, seed=3)
    ids = [f"P{i:03d}" for i in range(100)]
    folds = [_predictions(y[k::5], np.clip(p[k::5] + 0.02 * r, 0, 1), f"r{r}f{k}", ids[k::5])
             for r in (1, 2) for k in range(5)]
    predictions = pd.concat(folds)
    row = nested_row(predictions, outer_folds=5, repeats=2, n_boot=200, seed=0)
    expected = logistic_calibration(predictions["label"], predictions["probability"], predictions["patient_id"])
    assert row["cal_slope"] == pytest.approx(expected["cal_slope"][0])
    assert (row["cal_slope_low"], row["cal_slope_high"]) == pytest.approx(expected["cal_slope"][1][:2])
    assert "cluster-robust" in row["ci_method"] and "Cox 1958" in row["ci_method"]
    table = result_table([GridRow("radiomics", "US", SINGLE, ())], {("radiomics", "US"): row})
    text = markdown_table(table, "Table")
    assert "Calibration slope [95% CI]" in text and f"{row['cal_slope']:.3f} [{row['cal_slope_low']:.3f}-" in text
    holdout = holdout_row(_predictions(y, p), n_boot=200, seed=0)
    assert holdout["cal_intercept_low"] < holdout["cal_intercept"] < holdout["cal_intercept_high"]
    assert "model-based" in holdout["ci_method"]


def test_reliability_plot_bins_each_repeat_and_shows_bin_counts(tmp_path, monkeypatch):
    y, p = _miscalibrated(100, 0.0, 1.0, seed=4)
    ids = [f"P{i:03d}" for i in range(100)]
    predictions = pd.concat([_predictions(y[k::5], p[k::5] ** (1 + r / 4), f"r{r}f{k}", ids[k::5])
                             for r in (1, 2, 3) for k in range(5)]).assign(family="radiomics", method="US")
    kept = []
    monkeypatch.setattr(plots.plt, "close", kept.append)
    path = plots.plot_calibration(predictions, [("radiomics", "US")], tmp_path / "calibration.png", n_bins=10)
    assert path.stat().st_size > 0
    curve, strip = kept[0].axes
    assert len(curve.lines) == 3 + 1 + 1  # one curve per repeat, all repeats binned together, the diagonal
    counts = [int(text.get_text()) for text in curve.texts]
    assert len(counts) == 10 and sum(counts) == 300  # every patient once per repeat, never averaged
    assert sum(patch.get_height() for patch in strip.patches) == 300
    slope = logistic_calibration(predictions["label"], predictions["probability"], predictions["patient_id"])
    assert f"slope {slope['cal_slope'][0]:.2f}" in curve.get_title()
