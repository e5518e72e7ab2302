"""VGG-19 (Simonyan & Zisserman 2015) convolutional trunk as a feature extractor.

The sixteen 3x3 convolutions and five max pools sit in ``features`` at the indices of torchvision's
``vgg19`` (``features.0`` ... ``features.34`` convolutions, ``features.36`` the last pool), so its ImageNet
checkpoint loads with ``strict=True`` once the classifier (``classifier.*``: fc6, fc7, fc8) is dropped.
``forward`` returns the global-average-pooled 512-d output of the last block (pool5): the paper keeps the
convolution layers fixed and trains a new fully connected layer, so fc6/fc7 are not part of the features.
"""

from __future__ import annotations

import torch
from torch import nn

# output channels of each 3x3 convolution, "M" a 2x2 max pool (torchvision's configuration "E")
VGG19_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


class VGG19(nn.Module):
    """VGG-19 without its classifier; ``forward`` returns the pooled 512-d feature vector."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        for layer in VGG19_LAYERS:
            if layer == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_channels, layer, kernel_size=3, padding=1), nn.ReLU()]
                in_channels = layer
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)
