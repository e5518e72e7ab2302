"""Static checks of the MONAI bundle: metadata keys and types, licence, configs that agree with each other."""

from __future__ import annotations

import json
from pathlib import Path

import monai
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundle" / "configs"
RUNNABLE = ("train", "inference", "evaluate", "gradcam")

METADATA_TYPES = {
    "schema": str, "version": str, "changelog": dict, "monai_version": str, "pytorch_version": str,
    "numpy_version": str, "required_packages_version": dict, "task": str, "description": str, "authors": str,
    "copyright": str, "data_source": str, "data_type": str, "image_classes": str, "label_classes": str,
    "pred_classes": str, "intended_use": str, "references": list, "network_data_format": dict,
}


def load(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text())


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
    assert train["spatial_size"] == [224, 224]


def test_multi_gpu_config_overrides_train_config_ids():
    train, multi = load("train"), load("multi_gpu_train")
    for key in multi:
        root = key.split("#")[0]
        assert root in train or root in ("initialize", "run", "finalize"), key
    assert multi["trained_network"]["_target_"] == "torch.nn.parallel.DistributedDataParallel"
    assert multi["train#sampler"]["_target_"] == "DistributedSampler"
