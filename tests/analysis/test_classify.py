"""The seven classifiers, the family pipelines and the inner-CV model choice."""

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.estimator_checks import parametrize_with_checks

from mmdlr.classify import (
    CLASSIFIERS,
    DEFAULT_GRIDS,
    chosen_classifier,
    deep_steps,
    make_classifier,
    model_search,
    pca_of_all_steps,
    rad_df_steps,
    radiomics_steps,
)
from mmdlr.classify.zoo import PlattScaledSVC
from mmdlr.evaluate import StratifiedFoldsWithGroups
from mmdlr.select import LassoSelector


@pytest.fixture
def frame():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(40), np.ones(40)].astype(int)
    data = {f"a__f{j}": rng.normal(size=80) for j in range(6)}
    data["a__f0"] = data["a__f0"] + 2.0 * y
    data.update({f"b__f{j}": rng.normal(size=80) + (1.5 * y if j == 0 else 0) for j in range(30)})
    return pd.DataFrame(data), y


def test_seven_seeded_classifiers_with_grids():
    assert CLASSIFIERS == ("svm", "knn", "rf", "extratrees", "xgboost", "lightgbm", "lr")
    assert set(DEFAULT_GRIDS) == set(CLASSIFIERS)
    for name in CLASSIFIERS:
        params = make_classifier(name, random_state=5).get_params()
        assert set(DEFAULT_GRIDS[name]) <= set(params)
        if "random_state" in params:
            assert params["random_state"] == 5
    svm = make_classifier("svm")  # Platt-scaled SVC, the scikit-learn 1.9 form of SVC(probability=True)
    assert isinstance(svm, PlattScaledSVC) and isinstance(svm.estimator, SVC) and svm.random_state == 0
    assert make_classifier("lightgbm").get_params()["verbose"] == -1
    with pytest.raises(ValueError, match="unknown classifier"):
        make_classifier("naive_bayes")


def test_model_search_chooses_by_inner_cv_and_records_accuracy(frame):
    X, y = frame
    search = model_search(radiomics_steps(["a__f0", "a__f1", "a__f2"]),
                          {"lr": {"C": [1.0]}, "knn": {}, "svm": {"estimator__C": [0.1, 1.0]}}, inner_folds=3).fit(X, y)
    assert chosen_classifier(search) in ("LR", "KNN", "SVM")
    results = search.cv_results_
    assert len(results["params"]) == 4 and "mean_test_accuracy" in results
    assert results["rank_test_auc"][search.best_index_] == 1
    assert search.predict_proba(X).shape == (80, 2)


def test_one_predict_proba_gives_the_scores_of_scikit_learns_auc_and_accuracy_scorers(frame):
    """The search scores each candidate from one predict_proba call; for all seven classifiers that equals
    scikit-learn's own roc_auc and accuracy scorers (which call decision_function or predict as well)."""
    X, y = frame
    steps = [("columns", ColumnTransformer([("a", "passthrough", ["a__f0", "a__f1", "b__f0"])])),
             ("scale", StandardScaler())]
    search = model_search(steps, {name: {} for name in CLASSIFIERS}, inner_folds=3).fit(X, y)
    reference = GridSearchCV(Pipeline([*steps, ("clf", make_classifier("lr"))]), search.param_grid,
                             scoring={"auc": "roc_auc", "accuracy": "accuracy"}, refit="auc", cv=search.cv).fit(X, y)
    for metric in ("auc", "accuracy"):
        np.testing.assert_allclose(search.cv_results_[f"mean_test_{metric}"],
                                   reference.cv_results_[f"mean_test_{metric}"], rtol=0, atol=1e-12)


def _scored(search, final=True) -> dict[int, float]:
    """{grid index: mean inner-CV AUC} of the search's final (or screening) scorings."""
    results = search.cv_results_
    return {candidate: auc for candidate, auc, is_final in
            zip(results["candidate"], results["mean_test_auc"], results["final"]) if bool(is_final) == final}


def test_screening_scores_the_chosen_candidate_as_the_full_grid_does(frame):
    """Screened ensembles within the margin are scored again in full, an SVM uncalibrated: the final scores are the
    full grid's (the SVM's AUC too: Platt's sigmoid is monotone), and the choice is the same."""
    X, y = frame
    steps = radiomics_steps([f"a__f{j}" for j in range(6)] + ["b__f0", "b__f1"])
    grids = {"svm": {"estimator__C": [0.1, 1.0]}, "rf": {"max_depth": [None, 3]}, "xgboost": {}, "lr": {}}
    full = model_search(steps, grids, inner_folds=3, random_state=1).fit(X, y)
    everything = model_search(steps, grids, inner_folds=3, random_state=1, screen_margin=1.0).fit(X, y)
    screened = model_search(steps, grids, inner_folds=3, random_state=1, screen_margin=0.0).fit(X, y)
    reference = _scored(full)
    assert len(reference) == 6 and _scored(everything).keys() == reference.keys()
    for search in (everything, screened):
        for key, auc in _scored(search).items():
            assert auc == pytest.approx(reference[key], abs=1e-12), key
    for search in (everything, screened):
        assert search.cv_results_["candidate"][search.best_index_] == full.best_index_
    # margin 0: only the ensembles whose screening score is the best of the first round are scored in full
    first_round = screened.cv_results_["mean_test_auc"][:6]
    ensembles = ~np.asarray(screened.cv_results_["final"][:6])
    assert ensembles.sum() == 3 and len(_scored(screened)) == 3 + (first_round[ensembles] >= first_round.max()).sum()
    trees = everything.cv_results_["param_clf__n_estimators"]  # screened with an eighth of their 200 trees
    assert set(trees.compressed()) == {25} and trees.count() == 3 and len(trees) == 9


def test_screening_without_a_score_to_screen_by_scores_the_first_ensembles_in_full():
    """Two malignant patients in three inner splits: one test split has no malignant patient, so every mean AUC
    is NaN; the search still ends with a fully scored choice, the first as a plain grid search's."""
    rng = np.random.default_rng(0)
    X, y = pd.DataFrame(rng.normal(size=(30, 3)), columns=["a", "b", "c"]), np.r_[np.zeros(28), np.ones(2)].astype(int)
    with pytest.warns(UserWarning):
        search = model_search([("scale", StandardScaler())], {"rf": {"max_depth": [None, 2]}, "xgboost": {}},
                              screen_margin=0.02).fit(X, y)
    assert np.isnan(search.cv_results_["mean_test_auc"]).all()
    assert search.cv_results_["final"][search.best_index_] and search.cv_results_["candidate"][search.best_index_] == 0
    assert search.best_estimator_.named_steps["clf"].n_estimators == 200


def test_screened_svm_is_refitted_with_platt_scaling(frame):
    X, y = frame
    search = model_search(radiomics_steps(["a__f0", "a__f1"]), {"svm": {"estimator__C": [1.0]}},
                          screen_margin=0.01).fit(X, y)
    clf = search.best_estimator_.named_steps["clf"]
    assert search.cv_results_["params"][0]["clf__calibrate"] is False and search.cv_results_["screened"][0]
    assert clf.calibrate and "clf__calibrate" not in search.best_params_
    unscreened = model_search(radiomics_steps(["a__f0", "a__f1"]), {"svm": {"estimator__C": [1.0]}}).fit(X, y)
    np.testing.assert_array_equal(search.predict_proba(X), unscreened.predict_proba(X))


def test_a_search_from_an_older_model_file_reads_as_a_plain_grid_search(frame):
    X, y = frame
    search = model_search(radiomics_steps(["a__f0", "a__f1"]), {"lr": {}}, screen_margin=0.02).fit(X, y)
    older = type(search).__new__(type(search))  # saved before screening: no screen_* parameters
    older.__setstate__({key: value for key, value in search.__getstate__().items() if not key.startswith("screen_")})
    assert older.get_params()["screen_margin"] is None and "PreprocessOnceSearchCV" in repr(older)
    np.testing.assert_array_equal(older.predict_proba(X), search.predict_proba(X))


def test_platt_scaled_svc_uncalibrated_and_from_an_older_file(frame):
    X, y = frame
    calibrated = PlattScaledSVC(SVC()).fit(X, y)
    plain = PlattScaledSVC(SVC(), calibrate=False).fit(X, y)
    assert not hasattr(plain, "predict_proba") and hasattr(calibrated, "predict_proba")
    np.testing.assert_allclose(plain.decision_function(X), calibrated.decision_function(X))
    np.testing.assert_array_equal(plain.predict(X), SVC().fit(X, y).predict(X))
    older = PlattScaledSVC.__new__(PlattScaledSVC)  # a model file saved before `calibrate` existed
    older.__setstate__({key: value for key, value in calibrated.__getstate__().items() if key != "calibrate"})
    assert older.get_params()["calibrate"] and np.array_equal(older.predict_proba(X), calibrated.predict_proba(X))


def test_radiomics_pipeline_sees_only_its_columns_and_selects(frame):
    X, y = frame
    search = model_search(radiomics_steps([f"a__f{j}" for j in range(6)], p_threshold=0.01), {"lr": {}}).fit(X, y)
    pipeline = search.best_estimator_
    assert pipeline.named_steps["columns"].transform(X).shape == (80, 6)
    kept = pipeline.named_steps["mannwhitney"].get_support()
    assert kept[0] and kept.sum() <= 2
    shuffled_other = X.assign(**{f"b__f{j}": 0.0 for j in range(30)})
    np.testing.assert_allclose(search.predict_proba(X), search.predict_proba(shuffled_other))


def test_deep_steps_reduce_each_block_with_clipped_pca(frame):
    X, y = frame
    blocks = {"a": [f"a__f{j}" for j in range(6)], "b": [f"b__f{j}" for j in range(30)]}
    transformer = deep_steps(blocks, n_components=8)[0][1].fit(X.iloc[:10], y[:10])
    assert transformer.transform(X).shape == (80, 6 + 8)  # block a clipped to its 6 features
    assert transformer.named_transformers_["b"].named_steps["pca"].n_components_ == 8
    search = model_search(deep_steps(blocks, 32), {"lr": {}}).fit(X, y)
    assert search.best_estimator_.named_steps["blocks"].named_transformers_["b"]["pca"].n_components_ == 30


def test_pca_of_all_steps_pca_108_clipped_to_fold(frame):
    X, y = frame
    search = model_search(pca_of_all_steps(list(X.columns), 108), {"lr": {}}).fit(X, y)
    assert search.best_estimator_.named_steps["pca"].n_components_ == X.shape[1]
    assert search.best_estimator_.named_steps["pca"].fit(X.to_numpy()[:20]).n_components_ == 19


class RecordingLasso(LassoSelector):
    """LASSO selector that records the groups routed to it."""

    routed: list = []

    def fit(self, X, y, groups=None):
        RecordingLasso.routed.append(groups)
        return super().fit(X, y, groups)


def test_rad_df_reduces_each_family_apart_then_splices(frame):
    """Selected radiomics -> PCA(57) beside per-modality deep PCA -> PCA(51): the components never mix families."""
    X, y = frame
    radiomics = radiomics_steps([f"a__f{j}" for j in range(6)])
    radiomics[-1] = ("lasso", RecordingLasso())
    deep = deep_steps({"b1": [f"b__f{j}" for j in range(15)], "b2": [f"b__f{j}" for j in range(15, 30)]}, 10)
    groups = np.arange(80) // 2
    RecordingLasso.routed.clear()
    search = model_search(rad_df_steps(radiomics, deep, n_radiomics=57, n_deep=4), {"lr": {}}).fit(X, y, groups=groups)
    families = search.best_estimator_.named_steps["families"]
    radiomic_branch, deep_branch = (families.transformer_list[i][1] for i in (0, 1))
    kept = radiomic_branch.named_steps["lasso"].get_support().sum()
    assert radiomic_branch.named_steps["pca"].n_components_ == kept <= 6  # fewer than 57 selected: all kept
    assert deep_branch.named_steps["pca"].n_components_ == 4  # of the 2 x 10 per-modality components
    assert families.transform(X).shape == (80, kept + 4)
    assert RecordingLasso.routed  # every routed set of groups is whole pairs: no group split by an inner fold
    assert all(g is not None and len(g) == 2 * len(np.unique(g)) for g in RecordingLasso.routed)
    changed_deep = X.assign(**{f"b__f{j}": X[f"b__f{j}"] * 3 for j in range(30)})
    np.testing.assert_allclose(radiomic_branch.transform(X), radiomic_branch.transform(changed_deep))


class CountingScaler(StandardScaler):
    fits: list = []

    def fit(self, X, y=None, sample_weight=None):
        CountingScaler.fits.append(len(X))
        return super().fit(X, y, sample_weight)


def test_search_fits_preprocessing_once_per_inner_fold_with_unchanged_results(frame):
    X, y = frame
    grid = {"lr": {"C": [0.1, 1.0]}, "knn": {"n_neighbors": [3, 5]}}
    CountingScaler.fits.clear()
    search = model_search([("scale", CountingScaler())], grid, inner_folds=3).fit(X, y)
    assert CountingScaler.fits == [53, 53, 54, 80]  # 3 inner training folds and the refit, not 4 x 3 + 1
    plain = GridSearchCV(Pipeline([("scale", StandardScaler()), ("clf", make_classifier("lr"))]),
                         search.param_grid, scoring=search.scoring, refit="auc", cv=search.cv).fit(X, y)
    np.testing.assert_array_equal(search.cv_results_["mean_test_auc"], plain.cv_results_["mean_test_auc"])
    np.testing.assert_array_equal(search.predict_proba(X), plain.predict_proba(X))
    assert not search.estimator.memory._store  # emptied after fit: fitted models carry no cache


def test_platt_scaled_svc_is_calibrated_classifier_cv_on_its_folds(frame):
    X, y = frame
    svm = PlattScaledSVC(SVC(C=0.5), random_state=3).fit(X, y)
    reference = CalibratedClassifierCV(SVC(C=0.5), method="sigmoid", ensemble=False,
                                       cv=StratifiedFoldsWithGroups(5, random_state=3)).fit(X.to_numpy(), y)
    np.testing.assert_allclose(svm.predict_proba(X), reference.predict_proba(X.to_numpy()))
    assert svm.predict(X).tolist() == reference.predict(X.to_numpy()).tolist()


@parametrize_with_checks([PlattScaledSVC(SVC())])
def test_platt_scaled_svc_passes_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
