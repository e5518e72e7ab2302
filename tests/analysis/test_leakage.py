"""No leak: selection inside the folds keeps pure noise at chance (selecting on all data first does not), and
test labels change no test prediction, from the feature tables or from the images through a fine-tuned network
(hold-out: one network on the training split; nested CV: one network per outer fold)."""

import json

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mmdlr.analysis import FeatureTableError, config_from_dict, load_feature_set, run_analysis, runner
from mmdlr.analysis.runner import outer_folds
from mmdlr.classify import model_search, radiomics_steps
from mmdlr.deep import partition
from mmdlr.io.manifest import manifest_cases, read_manifest
from mmdlr.paths import CONFIG_DIR
from mmdlr.pipeline import run
from mmdlr.pipeline.config import load_run_config
from mmdlr.pipeline.run import nested_folds, run_pipeline
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
    feature_set = load_feature_set(features)
    folds = outer_folds(feature_set.labels, feature_set.groups, feature_set.split, config)
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
                "report.gradcam_cases=1", "parallel.n_jobs=1"]


@pytest.fixture(scope="module")
def us_cohort(tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    """The ultrasound columns of a 30-patient cohort, and its folder (where each test writes its manifests)."""
    folder = tmp_path_factory.mktemp("us_cohort") / "cohort"
    cohort = generate_cohort(folder, CohortSettings(patients=30, seed=11, missing_rate=0.0), progress=False)
    return pd.read_csv(cohort, dtype=str, keep_default_na=False)[["patient_id", "label", "split", "group",
                                                                     "us_image", "us_mask"]], folder


def _flip(table: pd.DataFrame, patients) -> pd.DataFrame:
    flip = table["patient_id"].isin(patients)
    return table.assign(label=np.where(flip, table["label"].map({"benign": "malignant", "malignant": "benign"}),
                                       table["label"]))


def test_network_finetuned_on_the_holdout_training_split_ignores_test_labels(us_cohort, tmp_path):
    """`mmdlr run` with deep.mode finetune (hold-out): the bundle's network, its deep features of every
    patient and the analysis's test predictions are the same when every test label is flipped."""
    table, cohort = us_cohort
    flipped = _flip(table, table.loc[table["split"] == "test", "patient_id"])
    config = load_run_config(CONFIG_DIR / "paper.yaml", FINETUNE_RUN)
    outputs = []
    for name, manifest in (("holdout_original", table), ("holdout_flipped", flipped)):
        manifest.to_csv(cohort / f"{name}.csv", index=False)
        outputs.append(run_pipeline(cohort / f"{name}.csv", config, tmp_path / name, progress=False).out_dir)
    deep = [pd.read_csv(out / "features" / "deep_us.csv").drop(columns="label") for out in outputs]
    pd.testing.assert_frame_equal(deep[1], deep[0])  # every patient's features and head probability
    predictions = [pd.read_csv(out / "results" / "predictions.csv") for out in outputs]
    assert len(predictions[0]) and (predictions[0]["label"] != predictions[1]["label"]).all()
    pd.testing.assert_frame_equal(predictions[1].drop(columns="label"), predictions[0].drop(columns="label"))


@pytest.fixture(scope="module")
def nested_finetune_runs(us_cohort, tmp_path_factory):
    """`mmdlr run` with deep.mode finetune under 2-fold nested CV, twice: every test label of fold r1f1 flipped
    in the second run. Both runs use the outer folds of the true labels (stratified folds would move with
    flipped labels). Returns (folds, original run folder, flipped run folder)."""
    tmp_path = tmp_path_factory.mktemp("nested_finetune")
    table, cohort = us_cohort
    config = load_run_config(CONFIG_DIR / "nested_cv.yaml", [*FINETUNE_RUN, "deep.max_epochs=1",
                                                             "nested_cv.outer_folds=2", "nested_cv.repeats=1",
                                                             "save_models=false"])
    table.to_csv(cohort / "original.csv", index=False)
    folds = nested_folds(read_manifest(cohort / "original.csv"), config)
    _flip(table, folds[0].test).to_csv(cohort / "flipped.csv", index=False)
    with pytest.MonkeyPatch.context() as patch:
        for module in (runner, run):
            patch.setattr(module, "outer_folds", lambda *_: folds)
        outputs = [run_pipeline(cohort / f"{name}.csv", config, tmp_path / name, progress=False).out_dir
                   for name in ("original", "flipped")]
    return folds, *outputs


def test_networks_finetuned_per_outer_fold_ignore_that_folds_test_labels(nested_finetune_runs):
    """Fold r1f1's network, its deep features of every patient and the analysis's r1f1 test predictions are the
    same when r1f1's test labels are flipped; the network trained on all patients (saved models) is not."""
    folds, original, flipped = nested_finetune_runs
    fold = folds[0]
    deep = [pd.read_csv(out / "features" / "deep_us" / f"{fold.name}.csv").drop(columns="label")
            for out in (original, flipped)]
    pd.testing.assert_frame_equal(deep[1], deep[0])
    all_patients = [pd.read_csv(out / "features" / "deep_us.csv").drop(columns="label") for out in (original, flipped)]
    assert not all_patients[1].equals(all_patients[0])  # the flipped labels reach a network that trained on them
    predictions = [pd.read_csv(out / "results" / "predictions.csv") for out in (original, flipped)]
    original_fold, flipped_fold = (frame[frame["fold"] == fold.name].reset_index(drop=True) for frame in predictions)
    assert set(original_fold["patient_id"].astype(str)) == set(fold.test)
    assert (flipped_fold["label"] == 1 - original_fold["label"]).all()
    pd.testing.assert_frame_equal(flipped_fold.drop(columns="label"), original_fold.drop(columns="label"))


def test_each_outer_folds_network_never_trains_on_its_test_patients(nested_finetune_runs):
    """Per fold: the bundle's training data (train and validation parts) holds none of its test patients, its
    feature table marks exactly them test, and every Grad-CAM case is drawn by a network that tested it."""
    folds, original, _ = nested_finetune_runs
    for fold in folds:
        cases = manifest_cases(original / "deep" / "folds" / fold.name / "manifest.csv", "us")
        trained_on = {case["patient_id"] for case in partition(cases, "development")}
        assert trained_on == set(fold.train) and not trained_on & set(fold.test)
        table = pd.read_csv(original / "features" / "deep_us" / f"{fold.name}.csv", dtype={"patient_id": str})
        assert set(table.loc[table["split"] == "test", "patient_id"]) == set(fold.test)
        assert (original / "deep" / "folds" / fold.name / "models" / "us" / "model.pt").is_file()
    cases = pd.read_csv(original / "gradcam" / "us" / "cases.csv", dtype={"patient_id": str})
    tested = {fold.name: set(fold.test) for fold in folds}
    assert len(cases) and all(case.patient_id in tested[case.fold] for case in cases.itertuples())
    for case in cases.itertuples():
        drawn = json.loads((original / "gradcam" / "us" / f"patients_{case.fold}.json").read_text())
        assert case.patient_id in drawn and (original / "gradcam" / "us" / f"{case.patient_id}_gradcam.png").is_file()


def _with_fold_tables(directory: Path, folds, shift: float = 100.0) -> Path:
    """deep_us/<fold>.csv beside deep_us.csv: the same patients, features moved by ``shift`` times the fold's
    number, split marking the fold's test patients."""
    table = pd.read_csv(directory / "deep_us.csv", dtype={"patient_id": str})
    (directory / "deep_us").mkdir()
    for number, fold in enumerate(folds, start=1):
        features = [column for column in table if column.startswith("deep_")]
        fold_table = table.assign(split=np.where(table["patient_id"].isin(fold.test), "test", "train"))
        fold_table[features] += shift * number
        fold_table.to_csv(directory / "deep_us" / f"{fold.name}.csv", index=False)
    return directory


def test_fold_tables_replace_a_blocks_features_in_their_fold_only(tmp_path):
    features = write_feature_tables(tmp_path / "features", n_patients=40, modalities=("us",), n_deep=6, seed=3)
    config = config_from_dict({**FLIP_GRID, "protocol": "nested_cv"})
    plain = load_feature_set(features)
    folds = outer_folds(plain.labels, plain.groups, plain.split, config)
    with_folds = load_feature_set(_with_fold_tables(features, folds))
    columns = plain.blocks["deep_us"].columns
    for number, fold in enumerate(folds, start=1):
        pd.testing.assert_frame_equal(with_folds.in_fold(fold).frame[columns], plain.frame[columns] + 100.0 * number)
        pd.testing.assert_frame_equal(with_folds.in_fold(fold).frame.drop(columns=columns),
                                      plain.frame.drop(columns=columns))
    pd.testing.assert_frame_equal(with_folds.in_fold(None).frame, plain.frame)  # final fit: all-patient network


def test_fold_tables_made_for_other_folds_are_refused(tmp_path):
    features = write_feature_tables(tmp_path / "features", n_patients=40, modalities=("us",), n_deep=6, seed=3)
    plain = load_feature_set(features)
    nested = config_from_dict({**FLIP_GRID, "protocol": "nested_cv"})
    folds = outer_folds(plain.labels, plain.groups, plain.split, nested)
    other = outer_folds(plain.labels, plain.groups, plain.split,
                        config_from_dict({**FLIP_GRID, "protocol": "nested_cv", "seed": 5}))
    assert folds != other
    _with_fold_tables(features, other)
    with pytest.raises(FeatureTableError, match=r"deep_us/r1f\d.csv: its network's test patients are not outer fold"):
        run_analysis(features, tmp_path / "out", nested, progress=False)
    with pytest.raises(FeatureTableError, match="no fold tables for outer fold holdout"):
        run_analysis(features, tmp_path / "out", config_from_dict({**FLIP_GRID, "protocol": "holdout"}),
                     progress=False)
