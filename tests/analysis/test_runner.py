"""The analysis grid end to end on synthetic feature tables (hold-out and nested CV), bundles and CLI."""

import shutil

import numpy as np
import pandas as pd
import pytest

from sklearn.base import clone
from sklearn.model_selection import cross_val_predict

from mmdlr.analysis import build_model, config_from_dict, load_bundle, load_feature_set, run_analysis
from mmdlr.analysis.fold import fit_row
from mmdlr.analysis.grid import GridRow, plan_rows
from mmdlr.cli.main import main
from mmdlr.evaluate import Fold, OneClassFoldError, StratifiedFoldsWithGroups, youden_threshold

from .synthetic_features import write_feature_tables

SMALL_GRID = {"classifiers": {"lr": {"C": [1.0]}, "knn": {"n_neighbors": [9]}}, "bootstrap": {"n": 200},
              "parallel": {"n_jobs": 2}}
TABLE_COLUMNS = ["method", "accuracy", "auc", "auc_low", "auc_high", "sensitivity", "sensitivity_low",
                 "sensitivity_high", "specificity", "specificity_low", "specificity_high", "brier", "classifier",
                 "AUC [95% CI]"]


@pytest.fixture(scope="module")
def holdout_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("holdout")
    features = write_feature_tables(root / "features", n_patients=200, missing={"mg": 0.1}, seed=0)
    rng = np.random.default_rng(0)
    labels = pd.read_csv(features / "radiomics_us.csv", dtype={"patient_id": str})[["patient_id", "label"]]
    manifest = labels.assign(label=labels["label"].map({0: "benign", 1: "malignant"}), us_image="", us_mask="",
                             age=rng.normal(50, 11, len(labels)).round(1),
                             menopause=rng.choice(["pre", "post"], len(labels)))
    manifest.to_csv(root / "manifest.csv", index=False)
    result = run_analysis(features, root / "out", config_from_dict(SMALL_GRID), manifest=root / "manifest.csv",
                          progress=False)
    return result, features


def test_holdout_run_writes_every_output(holdout_run):
    result, _ = holdout_run
    out = result.results_dir
    for name in ("radiomics", "deep", "fusion"):
        table = pd.read_csv(out / f"table_{name}.csv")
        assert set(TABLE_COLUMNS) <= set(table.columns)
        assert (out / f"table_{name}.md").read_text().count("\n|") == len(table) + 2
        assert (out / f"roc_{name}.png").stat().st_size > 10_000
        for metric in ("accuracy", "auc", "sensitivity", "specificity", "brier"):
            assert table[metric].between(0, 1).all()
        assert (table["auc_low"] <= table["auc"]).all() and (table["auc"] <= table["auc_high"]).all()
        assert (table["sensitivity_low"] <= table["sensitivity_high"]).all()
    methods = {family: table["method"].tolist() for family, table in result.tables.items()}
    assert methods["radiomics"] == ["MG", "MRI", "US", "MG+MRI", "MG+US", "MRI+US", "MG+MRI+US", "Ensemble",
                                    "Stacking"]
    assert methods["deep"] == methods["radiomics"]
    assert methods["radiomics+deep"] == ["Rad + DF", "Ensemble", "Stacking"]
    assert (out / "calibration.png").exists() and result.skipped == []
    assert pd.read_csv(out / "skipped_rows.csv").empty
    fusion = pd.read_csv(out / "table_fusion.csv")
    assert fusion[["cal_intercept", "cal_slope", "cal_slope_low", "cal_slope_high"]].notna().all().all()
    assert "Calibration slope [95% CI]" in (out / "table_fusion.md").read_text()


def test_rad_df_row_reduces_families_apart_and_pca_of_all_is_its_own_optional_row(tmp_path):
    features = load_feature_set(write_feature_tables(tmp_path / "features", n_patients=60, seed=1))
    rows, _ = plan_rows(features, config_from_dict({**SMALL_GRID, "fusion": {"pca_of_all": True}}))
    combined = {row.method: row for row in rows if row.family == "radiomics+deep"}
    assert list(combined) == ["Rad + DF", "PCA of all features", "Ensemble", "Stacking"]
    config = config_from_dict(SMALL_GRID)
    assert "PCA of all features" not in [row.method for row in plan_rows(features, config)[0]]
    rad_df = build_model(combined["Rad + DF"], features, config).estimator.named_steps["families"]
    radiomics, deep = (branch for _, branch in rad_df.transformer_list)
    assert list(radiomics.named_steps)[-4:] == ["mannwhitney", "spearman", "lasso", "pca"]
    assert radiomics.named_steps["pca"].n_components == 57 and deep.named_steps["pca"].n_components == 51
    assert sorted(deep.named_steps["blocks"].transformers[i][0] for i in range(3)) == ["deep_mg", "deep_mri", "deep_us"]
    assert all(column.startswith("radiomics_") for column in radiomics.named_steps["columns"].transformers[0][2])
    pca_of_all = build_model(combined["PCA of all features"], features, config).estimator
    assert pca_of_all.named_steps["pca"].n_components == 108 and "lasso" not in pca_of_all.named_steps


def test_holdout_predictions_are_test_patients_only(holdout_run):
    result, features = holdout_run
    predictions = pd.read_csv(result.results_dir / "predictions.csv", dtype={"patient_id": str})
    assert list(predictions.columns) == ["patient_id", "fold", "family", "method", "classifier", "probability",
                                         "label", "threshold", "modalities_used"]
    feature_set = load_feature_set(features)
    test_patients = set(predictions["patient_id"])
    assert 30 <= len(test_patients) <= 50  # about 20% of 200
    models = pd.read_csv(result.results_dir / "models" / "index.csv")
    train_size = models.set_index(["family", "method"]).loc[("radiomics", "US"), "trained_on"]
    assert f"n={200 - len(test_patients)}" in train_size
    mg = predictions[(predictions["family"] == "radiomics") & (predictions["method"] == "MG")]
    assert len(mg) == feature_set.frame.loc[list(test_patients), "radiomics_mg__original_firstorder_F0"].notna().sum()
    ensemble = predictions[(predictions["family"] == "radiomics") & (predictions["method"] == "Ensemble")]
    assert set(ensemble["modalities_used"]) == {"radiomics_mg+radiomics_mri+radiomics_us",
                                                "radiomics_mri+radiomics_us"}


def test_fusion_of_informative_modalities_beats_single_modalities(holdout_run):
    result, _ = holdout_run
    for family in ("radiomics", "deep"):
        auc = result.tables[family].set_index("method")["auc"]
        singles = auc[["MG", "MRI", "US"]]
        assert auc["MG+MRI+US"] > singles.max()
        assert max(auc["Ensemble"], auc["Stacking"]) > singles.mean() + 0.05
    assert result.tables["radiomics+deep"]["auc"].max() > max(
        result.tables[f]["auc"].iloc[:3].max() for f in ("radiomics", "deep"))


def test_comparisons_are_fixed_before_testing_and_the_rest_exploratory(holdout_run):
    result, _ = holdout_run
    tests = pd.read_csv(result.results_dir / "comparisons.csv", keep_default_na=False, na_values=[""])
    # no pairs in the config: every fusion row vs every single row of its family (combined: of every family)
    assert set(tests["kind"]) == {"exploratory"}
    assert len(tests) == 2 * 6 * 3 + 3 * 6
    radiomics = tests[tests["model_a"] == "radiomics/Stacking"]
    assert set(radiomics["model_b"]) == {"radiomics/MG", "radiomics/MRI", "radiomics/US"}
    assert tests["delong_p"].between(0, 1).all() and (tests["n_patients"] > 30).all()
    assert (tests["delong_p_holm"] >= tests["delong_p"]).all()
    assert tests["corrected_t_p"].isna().all()  # hold-out: one test set, no fold-wise test
    shown = pd.read_csv(result.results_dir / "shown_models.csv")
    assert shown.values.tolist() == [["radiomics", "Stacking"], ["deep", "Stacking"], ["radiomics+deep", "Stacking"]]


def test_prespecified_comparisons_get_both_tests_under_nested_cv(tmp_path):
    features = write_feature_tables(tmp_path / "features", n_patients=120, seed=3)
    config = config_from_dict(SMALL_GRID | {
        "protocol": "nested_cv", "nested_cv": {"outer_folds": 3, "repeats": 1}, "families": ["radiomics"],
        "fusion": {"early": False, "ensemble": False, "stacking": True},
        "comparisons": [["radiomics/Stacking", "radiomics/US"], ["radiomics/Stacking", "radiomics/Ensemble"]]})
    result = run_analysis(features, tmp_path / "out", config, progress=False)
    tests = pd.read_csv(result.results_dir / "comparisons.csv", keep_default_na=False, na_values=[""])
    first, absent = tests.iloc[0], tests.iloc[1]
    assert (first["kind"], first["model_a"], first["model_b"]) == ("pre-specified", "radiomics/Stacking",
                                                                    "radiomics/US")
    assert first["n_folds"] == 3 and 0 <= first["corrected_t_p"] <= 1 and 0 <= first["delong_p"] <= 1
    assert first["fold_difference_low"] <= first["fold_auc_difference"] <= first["fold_difference_high"]
    assert absent["note"] == "not in this run: radiomics/Ensemble" and np.isnan(absent["delong_p"])
    # the comparison listed in the config is not repeated among the exploratory ones
    exploratory = tests[tests["kind"] == "exploratory"]
    assert "radiomics/Stacking vs radiomics/US" not in set(exploratory["comparison"])
    shown = pd.read_csv(result.results_dir / "shown_models.csv")
    assert shown.values.tolist() == [["radiomics", "Stacking"], ["radiomics", "US"], ["radiomics", "Ensemble"]]


def test_saved_bundle_reproduces_test_predictions(holdout_run):
    result, features = holdout_run
    predictions = pd.read_csv(result.results_dir / "predictions.csv", dtype={"patient_id": str})
    for family, method, path in (("radiomics", "Ensemble", "radiomics/ensemble.skops"),
                                 ("radiomics+deep", "Rad + DF", "fusion/rad_df.skops"),
                                 ("deep", "MG+MRI", "deep/mg_mri.skops")):
        bundle = load_bundle(result.results_dir / "models" / path)
        assert (bundle.family, bundle.method) == (family, method)
        tables = {name: pd.read_csv(features / f"{name}.csv", dtype={"patient_id": str}) for name in bundle.blocks}
        frame = bundle.features_from_tables(tables)
        assert list(frame.columns) == bundle.feature_columns
        expected = predictions[(predictions["family"] == family) & (predictions["method"] == method)]
        np.testing.assert_allclose(bundle.predict_proba(frame.loc[expected["patient_id"]]), expected["probability"])
    without_mg = frame.index[frame.filter(like="deep_mg__").isna().all(axis=1)]
    assert len(without_mg) and bundle.requires_all_blocks  # early fusion on complete patients refuses, not imputes
    with pytest.raises(ValueError, match="needs every modality"):
        bundle.predict_proba(frame.loc[without_mg])
    ensemble = load_bundle(result.results_dir / "models" / "radiomics" / "ensemble.skops")
    assert not ensemble.requires_all_blocks


def test_clinical_table_compares_train_and_test(holdout_run):
    result, _ = holdout_run
    table = pd.read_csv(result.results_dir / "table_clinical.csv")
    assert list(dict.fromkeys(table["variable"])) == ["pathology", "age", "menopause"]
    age = table[table["variable"] == "age"].iloc[0]
    assert age["test_used"] == "t-test" and 0 <= age["p_value"] <= 1 and "±" in age["train"]
    menopause = table[table["variable"] == "menopause"]
    assert menopause.iloc[0]["test_used"] == "chi-square" and set(menopause["level"][1:]) == {"pre", "post"}


def test_nested_cv_with_groups(tmp_path):
    features = write_feature_tables(tmp_path / "features", n_patients=90, modalities=("mri", "us"), seed=1)
    for path in features.glob("*.csv"):  # pairs of patients share a group
        table = pd.read_csv(path)
        table.assign(group="g" + (table["patient_id"].str[1:].astype(int) // 2).astype(str)).to_csv(path, index=False)
    config = config_from_dict({**SMALL_GRID, "protocol": "nested_cv", "nested_cv": {"outer_folds": 3, "repeats": 2},
                               "families": ["radiomics"], "fusion": {"early": False, "stacking": False}})
    result = run_analysis(features, tmp_path / "out", config, progress=False)
    table = result.tables["radiomics"]
    assert table["method"].tolist() == ["MRI", "US", "Ensemble"]
    assert (table["n_folds"] == 6).all() and table["pooled_auc"].between(0.5, 1).all()
    assert (table["auc_low"] < table["auc"]).all() and "Nadeau-Bengio" in table["ci_method"].iloc[0]
    assert table["classifier"].str.contains(r"\(\d/6\)").all()
    assert "Pooled OOF AUC" in (result.results_dir / "table_radiomics.md").read_text()
    predictions = result.predictions
    assert (predictions.groupby(["method", "patient_id"]).size() == 2).all()  # once per repeat
    groups = load_feature_set(features).groups
    for _, fold in predictions[predictions["method"] == "US"].groupby("fold"):
        other = set(groups.index) - set(fold["patient_id"])
        assert set(groups[fold["patient_id"]]).isdisjoint(groups[list(other)])
    index = pd.read_csv(result.results_dir / "models" / "index.csv")
    assert index["trained_on"].str.startswith("all patients (n=90)").all()


def test_late_rows_fitted_fold_by_fold_or_row_by_row_give_the_same_results(tmp_path, monkeypatch):
    """Under nested CV one task per fold fits the fold's blocks and its single-modality, ensemble and stacking rows;
    with more workers than folds, the blocks are one task each, then the rows. Both give the same predictions and
    models."""
    import mmdlr.analysis.runner as runner

    features = write_feature_tables(tmp_path / "features", n_patients=90, modalities=("mri", "us"), seed=2)
    tasks = {}

    def counted(function, argument_lists, description, *args, **kwargs):
        tasks.setdefault(description, []).append(len(argument_lists))
        return run_parallel(function, argument_lists, description, *args, **kwargs)

    run_parallel = runner.run_parallel
    monkeypatch.setattr(runner, "run_parallel", counted)
    results = {}
    for n_jobs in (2, 8):  # 3 fits (2 outer folds + the final one): grouped by fold with 2 workers, by row with 8
        config = config_from_dict({**SMALL_GRID, "protocol": "nested_cv", "nested_cv": {"outer_folds": 2, "repeats": 1},
                                   "families": ["radiomics"], "fusion": {"early": False},
                                   "parallel": {"backend": "threading", "n_jobs": n_jobs}})
        results[n_jobs] = run_analysis(features, tmp_path / f"out{n_jobs}", config, progress=False)
    # 3 fold tasks; then 2 blocks x 3 fits, and MRI, US, Ensemble, Stacking x 3 fits
    assert tasks == {"analysis grid: models": [3, 2 * 3], "analysis grid: fusion": [4 * 3]}
    pd.testing.assert_frame_equal(results[2].predictions, results[8].predictions)
    frame = load_feature_set(features).frame
    for name in ("ensemble", "stacking", "us"):
        grouped, by_row = (load_bundle(results[n].results_dir / "models" / "radiomics" / f"{name}.skops")
                           for n in (2, 8))
        np.testing.assert_array_equal(grouped.predict_proba(frame), by_row.predict_proba(frame))


def test_youden_threshold_comes_from_training_out_of_fold_predictions(tmp_path):
    features = load_feature_set(write_feature_tables(tmp_path, n_patients=80, modalities=("us",), n_deep=4, seed=3))
    config = config_from_dict({**SMALL_GRID, "threshold": "youden"})
    fold = Fold("holdout", tuple(features.labels.index[:60]), tuple(features.labels.index[60:]))
    row = GridRow("radiomics", "US", "single", ("radiomics_us",))
    outcome = fit_row(row, fold, features, config, keep_model=True)
    X, y = features.frame.loc[list(fold.train)], features.labels.loc[list(fold.train)].to_numpy()
    chosen = clone(outcome.model.best_estimator_).set_params(memory=None)  # the search's choice, refitted per fold
    out_of_fold = cross_val_predict(chosen, X, y, method="predict_proba",
                                    cv=StratifiedFoldsWithGroups(config.inner_folds, config.seed))[:, 1]
    assert outcome.threshold == pytest.approx(youden_threshold(y, out_of_fold))
    assert (outcome.predictions["threshold"] == outcome.threshold).all()


def test_one_class_training_fold_raises_naming_the_fold(tmp_path):
    features = load_feature_set(write_feature_tables(tmp_path, n_patients=40, modalities=("us",), n_deep=4))
    benign = tuple(features.labels.index[features.labels == 0])
    fold = Fold("r2f3", train=benign, test=tuple(features.labels.index[features.labels == 1]))
    row = GridRow("radiomics", "US", "single", ("radiomics_us",))
    with pytest.raises(OneClassFoldError, match="radiomics / US, fold r2f3: training data has only class 0"):
        fit_row(row, fold, features, config_from_dict(SMALL_GRID))


def test_cli_analyze_with_absent_deep_tables_and_dask_backend(tmp_path, capsys):
    features = write_feature_tables(tmp_path / "features", n_patients=60, modalities=("mri", "us"), seed=2)
    for path in features.glob("deep_*.csv"):
        path.unlink()
    shutil.copy(features / "radiomics_us.csv", tmp_path / "unused.csv")
    config = tmp_path / "config.yaml"
    config.write_text("classifiers: {lr: {C: [1.0]}}\nbootstrap: {n: 200}\nfusion: {stacking: false}\n"
                      "save_models: false\nparallel: {backend: dask, n_jobs: 2}\n")
    assert main(["-q", "analyze", "--features", str(features), "--out", str(tmp_path / "out"),
                 "--config", str(config)]) == 0
    results = tmp_path / "out" / "results"
    assert pd.read_csv(results / "table_radiomics.csv")["method"].tolist() == ["MRI", "US", "MRI+US", "Ensemble"]
    assert not (results / "table_deep.csv").exists() and not (results / "models").exists()
    skipped = pd.read_csv(results / "skipped_rows.csv")
    assert set(skipped["family"]) == {"deep", "radiomics+deep"}
    assert skipped["reason"].str.contains("deep_us.csv").any()
    assert "results in" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("protocl: holdout\n")
    assert main(["-q", "analyze", "--features", str(features), "--out", str(tmp_path / "out"),
                 "--config", str(bad)]) == 2


def test_a_model_file_refused_while_the_tables_are_written_gives_one_line_and_no_model_folder(tmp_path, monkeypatch,
                                                                                               capsys):
    """The model files are made by the workers beside the parent's tables: a refusal there (a type mmdlr would not
    load) reaches the user as the one line it is, and no model folder is left half-written."""
    import mmdlr.analysis.runner as runner
    from mmdlr.analysis.bundle import ModelFileError

    def refused(bundle):
        raise ModelFileError(f"{bundle.family} / {bundle.method}: the model holds types mmdlr does not load (x.Y)")

    monkeypatch.setattr(runner, "model_file_bytes", refused)
    features = write_feature_tables(tmp_path / "features", n_patients=60, modalities=("us",), seed=4)
    config = tmp_path / "config.yaml"
    config.write_text("classifiers: {lr: {C: [1.0]}}\nbootstrap: {n: 200}\nfamilies: [radiomics]\n"
                      "parallel: {backend: threading, n_jobs: 2}\n")
    assert main(["-q", "analyze", "--features", str(features), "--out", str(tmp_path / "out"),
                 "--config", str(config)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert errors == ["mmdlr analyze: error: radiomics / US: the model holds types mmdlr does not load (x.Y)"]
    assert not (tmp_path / "out" / "results" / "models").exists()
