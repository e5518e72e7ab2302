"""VGG-19, GoogLeNet and Inception-v3 against torchvision (data/torchvision_*.json, recorded from torchvision
0.29.1's own model code by torchvision_reference.py): state-dict keys and shapes, strict loading of files with
torchvision's layout through the hub cache, and pooled features equal to torchvision's on the same weights."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from mmdlr.deep import DeepClassifier, get_backbone, imagenet_cache_path, load_pretrained
from mmdlr.deep import weights as weights_module
from mmdlr.deep.weights import IMAGENET_HEAD_PREFIXES

from .torchvision_reference import BACKBONES, reference_image, reference_path, reference_state_dict, sampled

REFERENCES = {name: json.loads(reference_path(name).read_text()) for name in BACKBONES}
HEADS = {"vgg19": {"classifier"}, "googlenet": {"aux1", "aux2", "fc"}, "inception_v3": {"AuxLogits", "fc"}}


def trunk_shapes(name: str) -> dict[str, list[int]]:
    """torchvision's keys and shapes without the ImageNet classifier and auxiliary heads."""
    return {key: shape for key, shape in REFERENCES[name]["state_dict"].items()
            if not key.startswith(IMAGENET_HEAD_PREFIXES)}


def torchvision_checkpoint(name: str) -> dict[str, torch.Tensor]:
    """A file with every key of torchvision's: the trunk with reference weights, the heads (dropped when
    loading) as one-element stand-ins so that VGG's 400 MB classifier is not built."""
    heads = {key: torch.zeros(1) for key in REFERENCES[name]["state_dict"] if key.startswith(IMAGENET_HEAD_PREFIXES)}
    return reference_state_dict(trunk_shapes(name)) | heads


@pytest.mark.parametrize("name", BACKBONES)
def test_keys_and_shapes_are_torchvisions_without_its_heads(name):
    heads = set(REFERENCES[name]["state_dict"]) - set(trunk_shapes(name))
    assert {key.split(".")[0] for key in heads} == HEADS[name]
    ours = {key: list(value.shape) for key, value in DeepClassifier(name).backbone.state_dict().items()
            if not key.endswith("num_batches_tracked")}
    assert ours == trunk_shapes(name)


@pytest.mark.parametrize("name", BACKBONES)
def test_torchvision_imagenet_file_loads_strictly_from_the_hub_cache(name, tmp_path, monkeypatch):
    """The registry names torchvision's URL; a file of that layout in the hub cache passes the hash check and
    loads with strict=True (with or without batch-norm ``num_batches_tracked`` counters)."""
    assert weights_module.IMAGENET_URLS[name] == REFERENCES[name]["url"]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    checkpoint = torchvision_checkpoint(name)
    network = DeepClassifier(name)
    counters = {key: torch.tensor(0) for key in network.backbone.state_dict() if key.endswith("num_batches_tracked")}
    staging = tmp_path / "staging.pth"
    torch.save(checkpoint | counters, staging)
    prefix = hashlib.sha256(staging.read_bytes()).hexdigest()[:8]
    url = REFERENCES[name]["url"].rsplit("-", 1)[0] + f"-{prefix}.pth"
    monkeypatch.setitem(weights_module.IMAGENET_URLS, name, url)
    imagenet_cache_path(url).parent.mkdir(parents=True)
    staging.rename(imagenet_cache_path(url))
    first_key = next(iter(trunk_shapes(name)))
    assert torch.equal(load_pretrained(network, "imagenet").backbone.state_dict()[first_key], checkpoint[first_key])
    torch.save(checkpoint, tmp_path / "without_counters.pth")
    loaded = load_pretrained(network, tmp_path / "without_counters.pth").backbone.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in checkpoint.items() if key in loaded)


@pytest.mark.parametrize("name", BACKBONES)
def test_pooled_features_equal_torchvisions_at_the_networks_own_input_size(name):
    """Same weights, same [0, 1] image: our network on the registry's normalisation gives the features
    torchvision's gives on ImageNet normalisation (and ``transform_input`` for GoogLeNet and Inception-v3)."""
    reference, spec = REFERENCES[name], get_backbone(name)
    assert (spec.input_size, spec.min_size, spec.width) == \
        (reference["input_size"], reference["min_size"], reference["pooled_features"]["width"])
    network = DeepClassifier(name).eval()
    network.backbone.load_state_dict(reference_state_dict(trunk_shapes(name)))
    image = reference_image(spec.input_size)
    x = (image - torch.tensor(spec.mean)[:, None, None]) / torch.tensor(spec.std)[:, None, None]
    with torch.no_grad():
        features = network.features(x)
    assert features.shape == (1, spec.width)
    np.testing.assert_allclose(sampled(features), reference["pooled_features"]["values"], rtol=1e-4, atol=1e-4)
