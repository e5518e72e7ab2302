"""Backbone + new two-class linear head, with the paper's frozen protocol and partial fine-tuning.

A trained checkpoint (``model.pt``) is the network's plain state dict, as the MONAI model zoo expects;
its ``_extra_state`` entry records the settings the network was built with (backbone, number of
classes, input size), so the bundle's configs rebuild the right network from the file alone.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdlr.deep.backbones import BACKBONES, get_backbone

MODES = ("frozen", "finetune")
SETTINGS = ("backbone", "num_classes", "spatial_size")
SETTINGS_KEY = "_extra_state"  # where torch's state_dict keeps the root module's get_extra_state()


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
    ``spatial_size`` is the input size it is trained and applied at: the network pools globally, so the
    size only travels with the weights, in the settings of :meth:`get_extra_state`.
    """

    __jit_unused_properties__ = ["gradcam_layer"]

    def __init__(self, backbone: str = "resnet50", num_classes: int = 2, spatial_size=(224, 224)):
        super().__init__()
        self.spec = get_backbone(backbone)
        self.spatial_size = tuple(int(size) for size in spatial_size)
        if min(self.spatial_size) < self.spec.min_size:
            raise ValueError(f"spatial_size {list(self.spatial_size)} is smaller than {backbone}'s smallest input side "
                             f"({self.spec.min_size} pixels): use a larger spatial_size")
        self.backbone = self.spec.build()
        self.head = nn.Linear(self.spec.width, num_classes)
        self.set_trainable(None)

    def get_extra_state(self) -> dict[str, Any]:
        """The settings saved with the weights (the state dict's ``_extra_state``): plain values only."""
        return {"backbone": self.spec.name, "num_classes": self.head.out_features,
                "spatial_size": list(self.spatial_size)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Refuse weights saved from a network built with other settings (called by ``load_state_dict``)."""
        if not isinstance(state, dict):
            raise RuntimeError(f"the checkpoint's network settings are {state!r}, not a dict of {', '.join(SETTINGS)}")
        ours = self.get_extra_state()
        differ = {name: value for name, value in state.items() if ours.get(name) != value}
        if differ:
            built = {name: ours.get(name) for name in differ}
            raise RuntimeError(f"the checkpoint was trained with {_describe(differ)} but this network is built with "
                               f"{_describe(built)}: leave --backbone and --spatial_size out (inference, evaluate and "
                               "gradcam read them from the checkpoint) or pass the checkpoint's values")

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


def _describe(settings: dict[str, Any]) -> str:
    return ", ".join(f"{name} {value!r}" for name, value in settings.items())


def checkpoint_settings(path: str | os.PathLike) -> dict[str, Any] | None:
    """The settings a trained checkpoint records (backbone, num_classes, spatial_size); ``None`` if no such file.

    The file is read as a plain state dict (``weights_only``: never unpickles code); a file without valid
    settings is an error naming it.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError) as error:
        raise ValueError(f"checkpoint {path} cannot be read as a torch state dict ({error})") from None
    settings = state.get(SETTINGS_KEY) if isinstance(state, dict) else None
    if not _valid_settings(settings):
        raise ValueError(f"checkpoint {path} records no valid network settings (backbone, num_classes, spatial_size "
                         f"under '{SETTINGS_KEY}'): it was not written by this bundle's train.json (bundle 0.2.0 or "
                         "later): train it again")
    return settings


def _valid_settings(settings) -> bool:
    if not isinstance(settings, dict) or set(settings) != set(SETTINGS):
        return False
    size = settings["spatial_size"]
    return (settings["backbone"] in BACKBONES and isinstance(settings["num_classes"], int)
            and settings["num_classes"] >= 2 and isinstance(size, list) and len(size) == 2
            and all(isinstance(side, int) and side > 0 for side in size))


def checkpoint_setting(path: str | os.PathLike, name: str, default):
    """Setting ``name`` of the checkpoint at ``path``, or ``default`` while there is no file there (the bundle
    configs' default for ``backbone`` and ``spatial_size``, so a trained network is rebuilt as it was trained)."""
    settings = checkpoint_settings(path)
    return default if settings is None else settings[name]
