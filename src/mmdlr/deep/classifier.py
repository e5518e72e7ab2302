"""Backbone + new two-class linear head, with the paper's frozen protocol and partial fine-tuning."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdlr.deep.backbones import get_backbone

MODES = ("frozen", "finetune")


def trainable_from(mode: str, unfreeze_from: str) -> str | None:
    """The ``unfreeze_from`` of a training mode: ``frozen`` trains the head only (``None``)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode '{mode}' (use one of {', '.join(MODES)})")
    return None if mode == "frozen" else unfreeze_from


class DeepClassifier(nn.Module):
    """``head(backbone(x))``: pooled ``width``-d features of a registered backbone -> ``num_classes`` logits.

    Built frozen (Lu et al. 2024: convolutional layers fixed, only the new fully connected layer
    learns); :meth:`set_trainable` opens the backbone from a chosen stage on. Batch-norm layers whose
    parameters are frozen stay in eval mode (running statistics fixed) even under ``train()``.
    """

    __jit_unused_properties__ = ["gradcam_layer"]

    def __init__(self, backbone: str = "resnet50", num_classes: int = 2):
        super().__init__()
        self.spec = get_backbone(backbone)
        self.backbone = self.spec.build()
        self.head = nn.Linear(self.spec.width, num_classes)
        self.set_trainable(None)

    @property
    def gradcam_layer(self) -> str:
        """Full module name of the backbone's last convolutional block output (for Grad-CAM)."""
        return f"backbone.{self.spec.gradcam_layer}"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled backbone features, shape (batch, width)."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def set_trainable(self, unfreeze_from: str | None) -> "DeepClassifier":
        """Freeze the backbone up to the first parameter named ``unfreeze_from...``; ``None``: all frozen.

        ``"all"`` unfreezes the whole backbone. The head is always trainable.
        """
        names = [name for name, _ in self.backbone.named_parameters()]
        if unfreeze_from is None:
            start = len(names)
        elif unfreeze_from == "all":
            start = 0
        else:
            matches = [i for i, name in enumerate(names) if name.startswith(f"{unfreeze_from}.")]
            if not matches:
                stages = sorted({name.split(".")[0] for name in names})
                raise ValueError(f"unfreeze_from '{unfreeze_from}' matches no parameter of {self.spec.name} "
                                 f"(top-level stages: {', '.join(stages)}; or 'all')")
            start = matches[0]
        for index, (_, parameter) in enumerate(self.backbone.named_parameters()):
            parameter.requires_grad_(index >= start)
        for parameter in self.head.parameters():
            parameter.requires_grad_(True)
        return self.train(self.training)

    def train(self, mode: bool = True) -> "DeepClassifier":
        super().train(mode)
        if not any(p.requires_grad for p in self.backbone.parameters()):
            self.backbone.eval()
        for module in self.backbone.modules():
            if isinstance(module, _BatchNorm) and not any(p.requires_grad for p in module.parameters()):
                module.eval()
        return self
