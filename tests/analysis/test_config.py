"""YAML analysis configs: shipped files load, unknown keys and bad values are rejected."""

from pathlib import Path

import pytest

from mmdlr.analysis import AnalysisConfig, ConfigError, config_from_dict, load_config
from mmdlr.classify import CLASSIFIERS, DEFAULT_GRIDS

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_paper_config_matches_the_paper():
    config = load_config(CONFIGS / "paper.yaml")
    assert config.protocol == "holdout" and config.seed == 42 and config.holdout.test_size == 0.2
    assert (config.pca.deep, config.pca.fused_radiomics, config.pca.fused_deep, config.pca.fused) == (32, 57, 51, 108)
    assert tuple(config.classifiers) == CLASSIFIERS
    assert config.fusion.early and config.fusion.ensemble and config.fusion.stacking
    assert not config.fusion.pca_of_all and config.fusion.temperature == 1.0
    assert config.families == ["radiomics", "deep", "radiomics+deep"]
    assert config.parallel.backend == "loky"


def test_nested_cv_config():
    config = load_config(CONFIGS / "nested_cv.yaml")
    assert config.protocol == "nested_cv"
    assert (config.nested_cv.outer_folds, config.nested_cv.repeats, config.inner_folds) == (5, 3, 3)
    assert vars(config.search) == {"screen_margin": 0.02, "screen_share": 0.125, "screen_keep": 3}
    assert config_from_dict({"search": {"screen_margin": None}}).search.screen_margin is None  # the plain grid search


def test_defaults_and_classifier_list_get_default_grids():
    assert config_from_dict(None) == AnalysisConfig()
    config = config_from_dict({"classifiers": ["svm", "lr"], "threshold": "youden"})
    assert config.classifiers == {"svm": DEFAULT_GRIDS["svm"], "lr": DEFAULT_GRIDS["lr"]}
    assert config_from_dict({"classifiers": {"knn": {"n_neighbors": 7}}}).classifiers == {"knn": {"n_neighbors": [7]}}


@pytest.mark.parametrize("values, message", [
    ({"protocl": "holdout"}, "unknown key.*config: protocl"),
    ({"fusion": {"early": True, "late": True}}, "unknown key.*config.fusion: late"),
    ({"parallel": {"backend": "spark"}}, "parallel.backend"),
    ({"protocol": "bootstrap"}, "protocol must be"),
    ({"threshold": 1.5}, "threshold"),
    ({"classifiers": {"naive_bayes": {}}}, "unknown classifier"),
    ({"classifiers": {"svm": {"Cost": [1]}}}, "classifiers.svm: unknown hyper-parameter"),
    ({"families": ["radiomics", "clinical"]}, "families"),
    ({"fusion": {"missing": "drop"}}, "fusion.missing"),
    ({"fusion": {"temperature": 0}}, "fusion.temperature must be a number > 0"),
    ({"pca": {"fused_deep": 0}}, "pca.fused_deep must be an integer >= 1"),
    ({"select": 3}, "config.select must be a mapping"),
    ({"search": {"screen_margin": "yes"}}, "search.screen_margin must be null or an AUC difference"),
    ({"search": {"screen_share": 0}}, r"search.screen_share must be in \(0, 1\]"),
    ({"search": {"screen_keep": 0}}, "search.screen_keep must be an integer >= 1"),
    ({"search": {"racing": True}}, "unknown key.*config.search: racing"),
])
def test_invalid_configs_are_rejected(values, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(values)
