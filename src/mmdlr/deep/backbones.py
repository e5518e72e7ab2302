"""Registry of 2D ImageNet backbones used as frozen or fine-tuned feature extractors.

Every backbone is built without its ImageNet classifier: its ``forward`` returns the global-average-pooled
feature vector (``width`` values). Module names equal the ones of the matching ImageNet checkpoint, so
pretrained weights load with ``strict=True`` (see :mod:`mmdlr.deep.weights`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from monai.networks.nets import DenseNet121, ResNet
from torch import nn

from mmdlr.deep.efficientnet_lite import EfficientNetLite0

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TF EfficientNet-Lite was trained on (pixel - 127) / 128, i.e. [0, 1] images normalised with 0.5 / 0.5
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


@dataclass(frozen=True)
class BackboneSpec:
    """How to build a backbone and what the rest of the pipeline needs to know about it.

    ``gradcam_layer`` names the module whose activations Grad-CAM uses (the last convolutional block's
    output) and ``last_stage`` the parameter-name prefix fine-tuning unfreezes by default, both relative
    to the backbone. ``mean``/``std`` normalise [0, 1] RGB input as the pretrained weights expect.
    """

    name: str
    width: int
    build: Callable[[], nn.Module]
    gradcam_layer: str
    last_stage: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def _resnet(layers: list[int]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        return ResNet(block="bottleneck", layers=layers, block_inplanes=[64, 128, 256, 512], spatial_dims=2,
                      n_input_channels=3, conv1_t_size=7, conv1_t_stride=2, feed_forward=False,
                      bias_downsample=False)

    return build


def _densenet121() -> nn.Module:
    net = DenseNet121(spatial_dims=2, in_channels=3, out_channels=1)
    del net.class_layers.out  # keep relu -> global average pool -> flatten
    return net


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("resnet50", 2048, _resnet([3, 4, 6, 3]), "layer4", "layer4"),
        BackboneSpec("resnet101", 2048, _resnet([3, 4, 23, 3]), "layer4", "layer4"),
        BackboneSpec("densenet121", 1024, _densenet121, "class_layers.relu", "features.denseblock4"),
        BackboneSpec("efficientnet_lite0", 1280, EfficientNetLite0, "_act_head", "_blocks.15",
                     mean=LITE_MEAN, std=LITE_STD),
    )
}


def get_backbone(name: str) -> BackboneSpec:
    """The registered spec called ``name``; a clear error lists the known names."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone '{name}' (known: {', '.join(BACKBONES)})") from None
