"""The run config: one file per protocol, overrides, validation of every section."""

from __future__ import annotations

import pytest

from mmdlr.analysis.config import ConfigError, load_config
from mmdlr.paths import CONFIG_DIR
from mmdlr.pipeline.bundle import bundle_overrides
from mmdlr.pipeline.config import load_run_config, parse_override
from mmdlr.pipeline.run import per_fold_networks


def test_paper_config_reproduces_the_paper_settings():
    config = load_run_config(CONFIG_DIR / "paper.yaml")
    assert config.analysis.protocol == "holdout" and config.analysis.holdout.test_size == 0.2
    assert (config.analysis.pca.deep, config.analysis.pca.fused) == (32, 108)
    assert set(config.analysis.classifiers) == {"svm", "knn", "rf", "extratrees", "xgboost", "lightgbm", "lr"}
    assert (config.deep.backbone, config.deep.mode, config.deep.max_epochs) == ("resnet50", "frozen", 200)
    assert (config.deep.batch_size, config.deep.learning_rate) == (32, 0.001)
    assert load_config(CONFIG_DIR / "paper.yaml").to_dict() == config.analysis.to_dict()
    assert load_run_config(CONFIG_DIR / "nested_cv.yaml").analysis.protocol == "nested_cv"


def test_overrides_reach_every_section():
    config = load_run_config(CONFIG_DIR / "paper.yaml", ["deep.max_epochs=5", "roi.margin=3", "deep.precision=bfloat16",
                                                         "protocol=nested_cv", "classifiers=[lr]"])
    assert config.deep.max_epochs == 5 and config.roi.margin == 3
    assert bundle_overrides(config, "out", "us")["precision"] == "bfloat16"
    assert config.analysis.protocol == "nested_cv" and list(config.analysis.classifiers) == ["lr"]
    assert config.raw["deep"]["max_epochs"] == 5
    assert parse_override("deep.spatial_size=[64,64]") == (["deep", "spatial_size"], [64, 64])


@pytest.mark.parametrize("override,message", [
    ("deep.epochs=3", "unknown key(s) in deep: epochs"),
    ("deep.mode=partial", "deep.mode must be one of frozen, finetune, not 'partial'"),
    ("deep.precision=float16", "deep.precision must be one of float32, bfloat16, not 'float16'"),
    ("radiomics.dimension=4d", "radiomics.dimension must be one of 2d, 3d"),
    ("protocol=cv", "protocol must be one of"),
    ("nothing", "must look like section.key=value"),
    ("seed.value=3", "seed is not a section"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_run_config(CONFIG_DIR / "paper.yaml", [override])


def test_finetune_under_nested_cv_loads_and_trains_one_network_per_outer_fold():
    """Once refused; now the deep stage trains a network per outer fold (tests/analysis/test_leakage.py)."""
    assert per_fold_networks(load_run_config(CONFIG_DIR / "nested_cv.yaml", ["deep.mode=finetune"]))
    assert not per_fold_networks(load_run_config(CONFIG_DIR / "nested_cv.yaml"))
    assert not per_fold_networks(load_run_config(CONFIG_DIR / "paper.yaml", ["deep.mode=finetune"]))
    assert not per_fold_networks(load_run_config(CONFIG_DIR / "nested_cv.yaml",
                                                 ["deep.mode=finetune", "deep.enabled=false"]))


def test_io_max_decoded_mb_is_validated_and_read(monkeypatch):
    assert load_run_config(CONFIG_DIR / "paper.yaml").io.max_decoded_mb == 2048
    assert load_run_config(CONFIG_DIR / "paper.yaml", ["io.max_decoded_mb=64"]).io.max_decoded_mb == 64
    for bad in ("0", "big"):
        with pytest.raises(ConfigError, match="io.max_decoded_mb"):
            load_run_config(CONFIG_DIR / "paper.yaml", [f"io.max_decoded_mb={bad}"])


def test_roi_mask_threshold_reaches_the_bundle():
    config = load_run_config(CONFIG_DIR / "paper.yaml", ["roi.mask_threshold=128"])
    assert bundle_overrides(config, "out", "us")["mask_threshold"] == 128
