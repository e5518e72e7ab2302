"""The CNN baselines stage with the paper's Table 4 networks: the input size each network gets, one bundle
train/evaluate/inference run per network at its smallest input on a US-only cohort (random backbone, 1 epoch), and
each case through the frozen backbone once, with the results of full passes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mmdlr.analysis.config import ConfigError
from mmdlr.analysis.features import META_COLUMNS
from mmdlr.deep import DeepClassifier, checkpoint_settings, get_backbone
from mmdlr.io.manifest import read_manifest
from mmdlr.paths import CONFIG_DIR
from mmdlr.pipeline.baselines import UNTRAINED, baselines_stage
from mmdlr.pipeline.bundle import bundle_overrides, run_bundle_config
from mmdlr.pipeline.config import load_run_config

PAPER = CONFIG_DIR / "paper.yaml"


def test_each_network_gets_its_own_input_size_unless_one_is_set():
    config = load_run_config(PAPER)
    assert config.deep.baselines == ["vgg19", "googlenet", "resnet101", "inception_v3"]
    sizes = {name: bundle_overrides(config, "out", "us", name)["spatial_size"] for name in config.deep.baselines}
    assert sizes == {"vgg19": [224, 224], "googlenet": [224, 224], "resnet101": [224, 224], "inception_v3": [299, 299]}
    assert bundle_overrides(config, "out", "us")["spatial_size"] == [224, 224]  # the main backbone, ResNet-50
    one_size = load_run_config(PAPER, ["deep.spatial_size=[96,80]"])
    assert bundle_overrides(one_size, "out", "us", "inception_v3")["spatial_size"] == [96, 80]


@pytest.mark.parametrize(("override", "message"), [
    ("deep.spatial_size=[64,64]", r"deep.spatial_size \[64, 64\] is smaller than the smallest input side of "
                                  r"inception_v3 \(75\)"),
    ("deep.spatial_size=[64]", r"deep.spatial_size must be \[height, width\] in pixels, or null"),
])
def test_spatial_sizes_the_networks_cannot_take_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_run_config(PAPER, [override])


@pytest.fixture(scope="module")
def us_manifest(small_cohort, tmp_path_factory):
    """The small cohort's ultrasound only (patients who have it, absolute paths): each network runs once."""
    table = pd.read_csv(small_cohort, dtype=str, keep_default_na=False)
    table = table.loc[table["us_image"] != "", ["patient_id", "label", "split", "group", "us_image", "us_mask"]]
    for column in ("us_image", "us_mask"):
        table[column] = [str(small_cohort.parent / path) for path in table[column]]
    path = tmp_path_factory.mktemp("us_only") / "manifest.csv"
    table.to_csv(path, index=False)
    return read_manifest(path)


@pytest.mark.parametrize("backbone", ["vgg19", "googlenet", "inception_v3"])
def test_baseline_runs_through_the_bundle_at_the_networks_smallest_input(backbone, us_manifest, tmp_path):
    spec = get_backbone(backbone)
    side = spec.min_size
    config = load_run_config(PAPER, [f"deep.baselines=[{backbone}]", f"deep.spatial_size=[{side},{side}]",
                                     "deep.max_epochs=1", "deep.batch_size=4", "deep.baseline_weights=none",
                                     "bootstrap.n=100"])
    baselines_stage(us_manifest, config, tmp_path)
    table = pd.read_csv(tmp_path / "results" / "table_cnn_baselines.csv")
    assert table["method"].tolist() == [f"{spec.display_name} (US), {UNTRAINED}"]
    assert table.loc[0, "input_size"] == f"{side}x{side}" and table.loc[0, "auc"] == pytest.approx(
        table.loc[0, "bundle_evaluate_auc"])
    note = (tmp_path / "results" / "table_cnn_baselines.md").read_text().strip().splitlines()[-1]
    assert f"input size {spec.display_name} {side}x{side}" in note
    folder = tmp_path / "baselines" / backbone
    assert checkpoint_settings(folder / "models" / "us" / "model.pt") == \
        {"backbone": backbone, "num_classes": 2, "spatial_size": [side, side]}
    deep = pd.read_csv(folder / "deep_us.csv", keep_default_na=False)
    assert len(deep) == len(us_manifest.table) and deep.shape[1] == len(META_COLUMNS) + spec.width + 1  # ids, features, head prob.
    assert np.isfinite(deep["head_prob_malignant"]).all()


@pytest.fixture
def backbone_images(monkeypatch) -> list[int]:
    """The batch sizes passed through the backbone of any DeepClassifier built during the test."""
    batches, build = [], DeepClassifier.__init__

    def counting(network, *args, **kwargs):
        build(network, *args, **kwargs)
        network.backbone.register_forward_hook(lambda module, inputs, output: batches.append(len(inputs[0])))

    monkeypatch.setattr(DeepClassifier, "__init__", counting)
    return batches


def test_each_case_passes_the_frozen_backbone_once_with_the_results_of_full_passes(
        us_manifest, tmp_path, backbone_images):
    config = load_run_config(PAPER, ["deep.baselines=[efficientnet_lite0]", "deep.spatial_size=[64,64]",
                                     "deep.max_epochs=2", "deep.batch_size=4", "deep.baseline_weights=imagenet",
                                     "bootstrap.n=100"])
    baselines_stage(us_manifest, config, tmp_path)
    assert sum(backbone_images) == len(us_manifest.table)  # train + validation in training, test in evaluate
    folder = tmp_path / "baselines" / "efficientnet_lite0"
    assert not list(folder.rglob("*.npz"))
    cached_table = pd.read_csv(folder / "deep_us.csv", keep_default_na=False)
    cached_metrics = json.loads((folder / "metrics_us_test.json").read_text())
    overrides = bundle_overrides(config, folder, "us", "efficientnet_lite0", manifest=str(us_manifest.path))
    run_bundle_config("evaluate", split="test", **overrides)
    run_bundle_config("inference", **overrides)
    full_table = pd.read_csv(folder / "deep_us.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(cached_table, full_table, rtol=1e-5)
    assert cached_table["head_prob_malignant"].nunique() > 1
    assert json.loads((folder / "metrics_us_test.json").read_text()) == pytest.approx(cached_metrics, abs=1e-6)
    table = pd.read_csv(tmp_path / "results" / "table_cnn_baselines.csv")
    assert table.loc[0, "bundle_evaluate_auc"] == pytest.approx(cached_metrics["auc"])
