"""Pretrained weights without the network: torchvision key layout, hub cache, hash check, offline error."""

from __future__ import annotations

import hashlib
from urllib.error import URLError

import pytest
import torch

from mmdlr.deep import DeepClassifier, imagenet_cache_path, load_pretrained
from mmdlr.deep import weights as weights_module

BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def torchvision_resnet_state_dict(layers: list[int]) -> dict[str, torch.Tensor]:
    """Random tensors with the key names and shapes of torchvision's ResNet (v1 checkpoints, no
    num_batches_tracked), written from torchvision's architecture, not from our model."""
    shapes = {"conv1.weight": (64, 3, 7, 7), **{f"bn1.{k}": (64,) for k in BN_KEYS}}
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers), start=1):
        for block in range(blocks):
            prefix = f"layer{stage}.{block}"
            shapes[f"{prefix}.conv1.weight"] = (planes, inplanes, 1, 1)
            shapes[f"{prefix}.conv2.weight"] = (planes, planes, 3, 3)
            shapes[f"{prefix}.conv3.weight"] = (planes * 4, planes, 1, 1)
            for index, channels in ((1, planes), (2, planes), (3, planes * 4)):
                shapes.update({f"{prefix}.bn{index}.{k}": (channels,) for k in BN_KEYS})
            if block == 0:
                shapes[f"{prefix}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                shapes.update({f"{prefix}.downsample.1.{k}": (planes * 4,) for k in BN_KEYS})
            inplanes = planes * 4
    shapes.update({"fc.weight": (1000, 2048), "fc.bias": (1000,)})
    generator = torch.Generator().manual_seed(0)
    return {key: torch.rand(shape, generator=generator) + 0.5 for key, shape in shapes.items()}


@pytest.mark.parametrize(("backbone", "layers"), [("resnet50", [3, 4, 6, 3]), ("resnet101", [3, 4, 23, 3])])
def test_torchvision_resnet_checkpoint_loads_strictly(tmp_path, backbone, layers):
    state_dict = torchvision_resnet_state_dict(layers)
    path = tmp_path / f"{backbone}.pth"
    torch.save(state_dict, path)
    network = load_pretrained(DeepClassifier(backbone), path)
    loaded = network.backbone.state_dict()
    assert set(loaded) - {k for k in loaded if k.endswith("num_batches_tracked")} == \
        set(state_dict) - {"fc.weight", "fc.bias"}
    assert torch.equal(loaded["conv1.weight"], state_dict["conv1.weight"])
    assert torch.equal(loaded["layer4.2.bn3.running_var"], state_dict["layer4.2.bn3.running_var"])


def test_torchvision_densenet_keys_are_renamed(tmp_path):
    """torchvision's legacy DenseNet names (``denselayer1.norm.1.weight``) map onto MONAI's ``.layers.``."""
    reference = DeepClassifier("densenet121").backbone.state_dict()
    torchvision_style = {}
    for key, value in reference.items():
        if key.endswith("num_batches_tracked"):
            continue
        for part in ("norm1", "norm2", "conv1", "conv2", "relu1", "relu2"):
            key = key.replace(f".layers.{part}.", f".{part[:-1]}.{part[-1]}.")
        torchvision_style[key] = torch.randn_like(value) if value.is_floating_point() else value
    torchvision_style.update({"classifier.weight": torch.zeros(1000, 1024), "classifier.bias": torch.zeros(1000)})
    assert "features.denseblock1.denselayer1.norm.1.weight" in torchvision_style
    torch.save(torchvision_style, tmp_path / "densenet.pth")
    loaded = load_pretrained(DeepClassifier("densenet121"), tmp_path / "densenet.pth").backbone.state_dict()
    assert torch.equal(loaded["features.denseblock1.denselayer1.layers.norm1.weight"],
                       torchvision_style["features.denseblock1.denselayer1.norm.1.weight"])


def _no_download(*args, **kwargs):
    raise AssertionError("must not download when the checkpoint is cached")


def test_imagenet_weights_come_from_the_hub_cache_with_hash_check(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    state_dict = torchvision_resnet_state_dict([3, 4, 6, 3])
    staging = tmp_path / "staging.pth"
    torch.save(state_dict, staging)
    prefix = hashlib.sha256(staging.read_bytes()).hexdigest()[:8]
    url = f"https://download.pytorch.org/models/resnet50-{prefix}.pth"
    monkeypatch.setitem(weights_module.IMAGENET_URLS, "resnet50", url)
    cached = imagenet_cache_path(url)
    assert cached == tmp_path / "torch" / "hub" / "checkpoints" / f"resnet50-{prefix}.pth"
    cached.parent.mkdir(parents=True)
    staging.rename(cached)
    network = load_pretrained(DeepClassifier("resnet50"), "imagenet")
    assert torch.equal(network.backbone.conv1.weight, state_dict["conv1.weight"])


def test_cached_file_with_wrong_hash_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    cached = imagenet_cache_path(weights_module.IMAGENET_URLS["resnet50"])
    assert cached.name == "resnet50-0676ba61.pth"
    cached.parent.mkdir(parents=True)
    torch.save(DeepClassifier("resnet50").backbone.state_dict(), cached)
    with pytest.raises(ValueError, match="does not start with 0676ba61"):
        load_pretrained(DeepClassifier("resnet50"), "imagenet")


def test_offline_without_cache_names_url_and_cache_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, *args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    url = weights_module.IMAGENET_URLS["resnet101"]
    with pytest.raises(RuntimeError) as error:
        load_pretrained(DeepClassifier("resnet101"), "imagenet")
    assert url in str(error.value)
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet101-63fe2227.pth") in str(error.value)


def test_whole_classifier_checkpoint_and_bad_files(tmp_path):
    trained = DeepClassifier("efficientnet_lite0")
    torch.nn.init.constant_(trained.head.weight, 0.5)
    torch.save(trained.state_dict(), tmp_path / "model.pt")
    network = load_pretrained(DeepClassifier("efficientnet_lite0"), tmp_path / "model.pt")
    assert torch.equal(network.head.weight, trained.head.weight)
    with pytest.raises(RuntimeError, match="model.pt do not fit"):
        load_pretrained(DeepClassifier("densenet121"), tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match="imagenet"):
        load_pretrained(trained, tmp_path / "missing.pth")
    assert load_pretrained(trained, "none") is trained
