"""Registry of 2D ImageNet backbones used as frozen or fine-tuned feature extractors.

Every backbone is built without its ImageNet classifier: its ``forward`` returns the global-average-pooled
feature vector (``width`` values). Module names equal the ones of the matching ImageNet checkpoint, so
pretrained weights load with ``strict=True`` (see :mod:`mmdlr.deep.weights`). The ResNets and DenseNet
are MONAI's networks; VGG-19, GoogLeNet and Inception-v3 (the other CNNs of the paper's Table 4), which
MONAI lacks, are torchvision's architectures rebuilt in :mod:`mmdlr.deep.vgg`, :mod:`mmdlr.deep.googlenet`
and :mod:`mmdlr.deep.inception_v3`, so torchvision itself is never imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from monai.networks.nets import DenseNet121, ResNet
from torch import nn

from mmdlr.deep.efficientnet_lite import EfficientNetLite0
from mmdlr.deep.googlenet import GoogLeNet
from mmdlr.deep.inception_v3 import InceptionV3
from mmdlr.deep.vgg import VGG19

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TF EfficientNet-Lite was trained on (pixel - 127) / 128, i.e. [0, 1] images normalised with 0.5 / 0.5
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
# GoogLeNet and Inception-v3 weights ported from TF expect (pixel - 0.5) / 0.5 (torchvision's transform_input)
HALF = (0.5,) * 3


@dataclass(frozen=True)
class BackboneSpec:
    """How to build a backbone and what the rest of the pipeline needs to know about it.

    ``gradcam_layer`` names the module whose activations Grad-CAM uses (the last convolutional block's
    output) and ``last_stage`` the parameter-name prefix fine-tuning unfreezes by default, both relative
    to the backbone. ``mean``/``std`` normalise [0, 1] RGB input as the pretrained weights expect.
    ``input_size`` is the side of the square images the ImageNet weights were trained at (the network's own
    input size, used unless a run sets ``spatial_size``), ``min_size`` the smallest side the network takes
    (both torchvision's figures).
    """

    name: str
    display_name: str
    width: int
    build: Callable[[], nn.Module]
    gradcam_layer: str
    last_stage: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: int = 224
    min_size: int = 1

    def spatial_size(self, size=None) -> list[int]:
        """``size`` as [height, width], or the network's own square input size when ``size`` is None."""
        return [self.input_size] * 2 if size is None else list(size)


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
        BackboneSpec("resnet50", "ResNet-50", 2048, _resnet([3, 4, 6, 3]), "layer4", "layer4"),
        BackboneSpec("resnet101", "ResNet-101", 2048, _resnet([3, 4, 23, 3]), "layer4", "layer4"),
        BackboneSpec("densenet121", "DenseNet-121", 1024, _densenet121, "class_layers.relu", "features.denseblock4",
                     min_size=29),
        BackboneSpec("efficientnet_lite0", "EfficientNet-Lite0", 1280, EfficientNetLite0, "_act_head", "_blocks.15",
                     mean=LITE_MEAN, std=LITE_STD),
        # VGG-19: conv5_4's ReLU (before pool5) for Grad-CAM; fine-tuning opens the fifth block (conv5_1 on)
        BackboneSpec("vgg19", "VGG-19", 512, VGG19, "features.35", "features.28", min_size=32),
        BackboneSpec("googlenet", "GoogLeNet", 1024, GoogLeNet, "inception5b", "inception5a", mean=HALF, std=HALF,
                     min_size=15),
        BackboneSpec("inception_v3", "Inception-v3", 2048, InceptionV3, "Mixed_7c", "Mixed_7a", mean=HALF, std=HALF,
                     input_size=299, min_size=75),
    )
}


def get_backbone(name: str) -> BackboneSpec:
    """The registered spec called ``name``; a clear error lists the known names."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone '{name}' (known: {', '.join(BACKBONES)})") from None
