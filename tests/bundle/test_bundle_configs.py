"""Static checks of the MONAI bundle: metadata keys and types, licence, configs that agree with each other."""

from __future__ import annotations

import json
from pathlib import Path

import monai
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from torch.utils.data import Subset

from mmdlr.deep import DeepClassifier, extract_features, get_backbone

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundle" / "configs"
RUNNABLE = ("train", "inference", "evaluate", "gradcam")
FROM_CHECKPOINT = ("inference", "evaluate", "gradcam")

METADATA_TYPES = {
    "schema": str, "version": str, "changelog": dict, "monai_version": str, "pytorch_version": str,
    "numpy_version": str, "required_packages_version": dict, "task": str, "description": str, "authors": str,
    "copyright": str, "data_source": str, "data_type": str, "image_classes": str, "label_classes": str,
    "pred_classes": str, "intended_use": str, "references": list, "network_data_format": dict,
}


def load(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text())


def parse(name: str, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / f"{name}.json"))
    parser.update(overrides)
    return parser


def test_metadata_has_the_bundle_spec_keys_with_their_types():
    metadata = load("metadata")
    for key, kind in METADATA_TYPES.items():
        assert isinstance(metadata.get(key), kind), key
    assert metadata["version"] in metadata["changelog"]
    assert any("1402967" in reference and "Lu" in reference for reference in metadata["references"])
    image = metadata["network_data_format"]["inputs"]["image"]
    assert image["num_channels"] == 3 and image["spatial_shape"] == [224, 224]
    pred = metadata["network_data_format"]["outputs"]["pred"]
    assert pred["num_channels"] == 2 and pred["channel_def"] == {"0": "benign", "1": "malignant"}
    assert metadata["monai_version"] == monai.__version__
    assert metadata["pytorch_version"] == torch.__version__.split("+")[0]


def test_bundle_licence_is_the_project_licence():
    assert (REPO / "bundle" / "LICENSE").read_text() == (REPO / "LICENSE").read_text()
    assert "Apache License" in (REPO / "bundle" / "LICENSE").read_text()


@pytest.mark.parametrize("name", RUNNABLE)
def test_runnable_configs_declare_the_user_contract(name):
    config = load(name)
    for key in ("initialize", "run", "finalize", "manifest", "modality", "output_dir", "network_def", "backbone",
                "spatial_size", "deterministic_transforms"):
        assert key in config, key
    assert "torchvision" not in json.dumps(config)


def test_all_configs_share_one_roi_preprocessing():
    reference = load("train")["deterministic_transforms"]
    targets = [t["_target_"] for t in reference]
    assert targets[:5] == ["mmdlr.io.transforms.LoadGreyImaged", "mmdlr.io.transforms.LoadLesionMaskd",
                           "mmdlr.io.transforms.CheckGeometryd", "mmdlr.roi.transforms.SelectLargestLesionSliced",
                           "mmdlr.roi.transforms.CropLesionROId"]
    for name in RUNNABLE[1:]:
        assert load(name)["deterministic_transforms"] == reference, name


def test_paper_hyperparameters_are_the_defaults():
    train = load("train")
    assert (train["backbone"], train["weights"], train["mode"]) == ("resnet50", "imagenet", "frozen")
    assert (train["max_epochs"], train["batch_size"], train["learning_rate"], train["momentum"]) == (200, 32, 0.001, 0)
    assert train["optimizer"]["_target_"] == "torch.optim.SGD"
    assert parse("train").get_parsed_content("spatial_size") == [224, 224]
    assert parse("train", backbone="inception_v3").get_parsed_content("spatial_size") == [299, 299]


def test_multi_gpu_config_overrides_train_config_ids():
    train, multi = load("train"), load("multi_gpu_train")
    for key in multi:
        root = key.split("#")[0]
        assert root in train or root in ("initialize", "run", "finalize"), key
    assert multi["trained_network"]["_target_"] == "torch.nn.parallel.DistributedDataParallel"
    assert multi["train#sampler"]["_target_"] == "DistributedSampler"


@pytest.mark.parametrize("name", FROM_CHECKPOINT)
def test_configs_rebuild_the_network_the_checkpoint_records(name, tmp_path):
    """Without a checkpoint the defaults are train.json's; with one, its backbone and input size."""
    train = parse("train")
    defaults = parse(name, ckpt_path=str(tmp_path / "absent.pt"))
    assert (defaults.get_parsed_content("backbone"), defaults.get_parsed_content("spatial_size")) == \
        (train.get_parsed_content("backbone"), train.get_parsed_content("spatial_size"))
    torch.save(DeepClassifier("efficientnet_lite0", spatial_size=[96, 80]).state_dict(), tmp_path / "model.pt")
    parser = parse(name, ckpt_path=str(tmp_path / "model.pt"))
    network = parser.get_parsed_content("network_def")
    assert network.get_extra_state() == {"backbone": "efficientnet_lite0", "num_classes": 2, "spatial_size": [96, 80]}
    assert parser.get_parsed_content("image_mean") == get_backbone("efficientnet_lite0").mean


def test_network_data_format_matches_the_default_network_and_preprocessing(tmp_path):
    """metadata.json describes what inference.json's defaults feed the network and what it returns."""
    image, pred = (load("metadata")["network_data_format"][part][key] for part, key in (("inputs", "image"),
                                                                                         ("outputs", "pred")))
    parser = parse("inference", bundle_root=str(tmp_path))
    transforms = {t["_target_"]: t for t in load("inference")["deterministic_transforms"]}
    assert image["spatial_shape"] == parser.get_parsed_content("spatial_size")
    assert image["num_channels"] == transforms["RepeatChanneld"]["repeats"]
    scaled = transforms["ScaleIntensityRangePercentilesd"]
    assert (scaled["b_min"], scaled["b_max"], scaled["clip"]) == (0.0, 1.0, True)
    spec = get_backbone(parser.get_parsed_content("backbone"))
    lowest = min((0 - mean) / std for mean, std in zip(spec.mean, spec.std))
    highest = max((1 - mean) / std for mean, std in zip(spec.mean, spec.std))
    assert image["value_range"] == pytest.approx([lowest, highest], abs=1e-4)
    network = parser.get_parsed_content("network_def").eval()
    with torch.no_grad():
        output = network(torch.rand(1, image["num_channels"], *image["spatial_shape"]))
    assert list(output.shape) == pred["spatial_shape"] and output.shape[1] == pred["num_channels"]
    assert str(output.dtype) == f"torch.{pred['dtype']}" == f"torch.{image['dtype']}"


@pytest.mark.parametrize("name", RUNNABLE)
def test_mask_label_and_threshold_reach_the_mask_loader(name):
    transforms = parse(name, mask_threshold=128).get_parsed_content("deterministic_transforms")
    loader = next(t for t in transforms if type(t).__name__ == "LoadLesionMaskd")
    assert (loader.label_value, loader.threshold) == (None, 128)


@pytest.mark.parametrize(("mode", "cached"), [("frozen", False), ("finetune", True)])
def test_only_finetuning_keeps_the_preprocessed_images_in_memory(small_cohort, mode, cached):
    """A frozen backbone reads each ROI once (its features are cached instead), so no image is held: a cohort of
    thousands would not fit. Fine-tuning reads every ROI every epoch and keeps them."""
    dataset = parse("train", manifest=str(small_cohort), modality="us", mode=mode).get_parsed_content("train#dataset")
    assert len(dataset) > 0 and (dataset.cache_num == len(dataset)) is cached and (dataset.cache_num == 0) is not cached


def test_the_frozen_feature_pass_preprocesses_in_a_worker_with_the_same_features(small_cohort):
    """train.json's and inference.json's feature pass reads and preprocesses the ROIs in a DataLoader worker beside
    the network (MG and MRI-T2 reading costs more than the network): the features are those of one process."""
    assert load("train")["feature_num_workers"] == 1 and load("inference")["num_workers"] == 1
    parser = parse("train", manifest=str(small_cohort), modality="mg", backbone="efficientnet_lite0", weights="none",
                   spatial_size=[64, 64])
    network, dataset = parser.get_parsed_content("network"), parser.get_parsed_content("train#dataset")
    dataset = Subset(dataset, range(6))
    in_process, in_worker = (extract_features(network, dataset, 4, "cpu", workers) for workers in (0, 1))
    assert len(in_worker.features) == 6
    np.testing.assert_array_equal(in_process.features, in_worker.features)
    assert in_process.meta == in_worker.meta
