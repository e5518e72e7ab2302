"""No leak: selection inside the folds keeps pure noise at chance (selecting on all data first does not), and
test labels change no test prediction, from the feature tables or from the images through a fine-tuned network."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mmdlr.analysis import config_from_dict, load_feature_set, run_analysis, runner
from mmdlr.analysis.runner import outer_folds
from mmdlr.classify import model_search, radiomics_steps
from mmdlr.paths import CONFIG_DIR
from mmdlr.pipeline.config import load_run_config
from mmdlr.pipeline.run import run_pipeline
from mmdlr.select import MannWhitneyFilter
from mmdlr.synthetic import CohortSettings, generate_cohort

from .synthetic_features import write_feature_tables

SEEDS = (0, 1, 2, 3)


def _noise(seed):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(60, 2000)), columns=[f"f{j}" for j in range(2000)])
    y = rng.permutation(np.r_[np.zeros(30), np.ones(30)]).astype(int)
    return X, y


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # LassoCV path ends at p >> n
def test_nested_cv_auc_on_noise_is_chance_and_leaky_selection_is_not():
    honest, leaky = [], []
    for seed in SEEDS:
        X, y = _noise(seed)
        outer = StratifiedKFold(5, shuffle=True, random_state=seed)
        pipeline = model_search(radiomics_steps(list(X.columns), random_state=seed), {"lr": {"C": [1.0]}},
                                inner_folds=3, random_state=seed)
        honest.append(roc_auc_score(y, cross_val_predict(pipeline, X, y, cv=outer, method="predict_proba")[:, 1]))
        selected = MannWhitneyFilter().fit(X, y).get_support()  # leak: filter sees the test folds' labels
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        leaky.append(roc_auc_score(y, cross_val_predict(classifier, X.loc[:, selected], y, cv=outer,
                                                        method="predict_proba")[:, 1]))
    # measured: honest 0.37, 0.63, 0.57, 0.48 (mean 0.51); leaky >= 0.99 for every seed
    assert 0.35 <= np.mean(honest) <= 0.65
    assert min(leaky) > 0.85


def _pair_grouped_tables(directory: Path, seed: int) -> Path:
    """Feature tables (radiomics and frozen-backbone-like deep features, two modalities), pairs of patients
    sharing a group."""
    write_feature_tables(directory, n_patients=60, modalities=("mri", "us"), n_radiomics=8, n_deep=16,
                         missing={"mri": 0.1}, seed=seed)
    for path in directory.glob("*.csv"):
        table = pd.read_csv(path, dtype={"patient_id": str})
        table.assign(group="g" + (table["patient_id"].str[1:].astype(int) // 2).astype(str)).to_csv(path, index=False)
    return directory


def _with_labels_flipped(source: Path, target: Path, patients) -> Path:
    target.mkdir()
    for path in source.glob("*.csv"):
        table = pd.read_csv(path, dtype={"patient_id": str})
        flip = table["patient_id"].isin(patients)
        table.loc[flip, "label"] = 1 - table.loc[flip, "label"]
        table.to_csv(target / path.name, index=False)
    return target


# every row kind (single, early, combined, ensemble, stacking) and an SVM
FLIP_GRID = {"classifiers": {"lr": {"C": [1.0]}, "svm": {"estimator__C": [1.0]}},
             "pca": {"deep": 4, "fused": 8}, "nested_cv": {"outer_folds": 2, "repeats": 1}, "bootstrap": {"n": 100},
             "save_models": False}


@pytest.mark.parametrize("protocol", ["holdout", "nested_cv"])
def test_flipping_every_test_label_changes_no_test_prediction(tmp_path, monkeypatch, protocol):
    """run_analysis end to end, twice: the test patients' labels flipped in the second run. Both runs use
    the outer folds of the true labels (the folds are stratified, so flipped labels would move them); under
    nested CV the first outer fold's test labels are flipped and its predictions compared."""
    features = _pair_grouped_tables(tmp_path / "features", seed=7)
    config = config_from_dict({**FLIP_GRID, "protocol": protocol})
    folds = outer_folds(load_feature_set(features), config)
    monkeypatch.setattr(runner, "outer_folds", lambda *_: folds)
    fold = folds[0]
    flipped = _with_labels_flipped(features, tmp_path / "flipped", fold.test)
    runs = [run_analysis(directory, tmp_path / f"out_{directory.name}", config, progress=False).predictions
            for directory in (features, flipped)]
    original, after = (predictions[predictions["fold"] == fold.name].reset_index(drop=True) for predictions in runs)
    assert original.groupby(["family", "method"]).ngroups == 13 and set(original["patient_id"]) == set(fold.test)
    assert (after["label"] == 1 - original["label"]).all()
    pd.testing.assert_frame_equal(after.drop(columns="label"), original.drop(columns="label"))


FINETUNE_RUN = ["deep.backbone=efficientnet_lite0", "deep.mode=finetune", "deep.max_epochs=2",
                "deep.spatial_size=[32,32]", "deep.batch_size=8", "deep.baselines=[]", "families=[deep]",
                "classifiers={lr: {C: [1.0]}}", "inner_folds=2", "pca.deep=4", "bootstrap.n=100",
                "report.gradcam_cases=1"]


def test_network_finetuned_on_the_holdout_training_split_ignores_test_labels(tmp_path):
    """`mmdlr run` with deep.mode finetune (hold-out): the bundle's network, its deep features of every
    patient and the analysis's test predictions are the same when every test label is flipped."""
    cohort = generate_cohort(tmp_path / "cohort", CohortSettings(patients=30, seed=11, missing_rate=0.0),
                             progress=False)
    table = pd.read_csv(cohort, dtype=str, keep_default_na=False)
    table = table[["patient_id", "label", "split", "group", "us_image", "us_mask"]]
    flipped = table.assign(label=np.where(table["split"] == "test",
                                          table["label"].map({"benign": "malignant", "malignant": "benign"}),
                                          table["label"]))
    config = load_run_config(CONFIG_DIR / "paper.yaml", FINETUNE_RUN)
    outputs = []
    for name, manifest in (("original", table), ("flipped", flipped)):
        manifest.to_csv(cohort.parent / f"{name}.csv", index=False)
        outputs.append(run_pipeline(cohort.parent / f"{name}.csv", config, tmp_path / name, progress=False).out_dir)
    deep = [pd.read_csv(out / "features" / "deep_us.csv").drop(columns="label") for out in outputs]
    pd.testing.assert_frame_equal(deep[1], deep[0])  # every patient's features and head probability
    predictions = [pd.read_csv(out / "results" / "predictions.csv") for out in outputs]
    assert len(predictions[0]) and (predictions[0]["label"] != predictions[1]["label"]).all()
    pd.testing.assert_frame_equal(predictions[1].drop(columns="label"), predictions[0].drop(columns="label"))
