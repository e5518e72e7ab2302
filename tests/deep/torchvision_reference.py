"""torchvision's VGG-19, GoogLeNet and Inception-v3 as test data (``data/torchvision_<backbone>.json``).

Each file holds the state-dict key -> shape list of torchvision's model as its ImageNet weights are loaded
(GoogLeNet and Inception-v3 with their auxiliary heads; ``num_batches_tracked`` left out), the weights' URL,
and pooled features that torchvision's own code computes from :func:`reference_state_dict` weights on a
seeded [0, 1] image normalised as torchvision's weights expect (ImageNet mean/std, with ``transform_input``
for GoogLeNet and Inception-v3). torchvision cannot be imported with this torch build, but its model files
are plain PyTorch; regenerate with them alone:

    pip download torchvision==0.29.1 --no-deps -d /tmp/tv
    unzip -o /tmp/tv/torchvision-*.whl 'torchvision/models/*' -d /tmp/tv
    .venv/bin/python tests/deep/torchvision_reference.py /tmp/tv/torchvision/models 0.29.1
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import types
import zlib
from enum import Enum
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

DATA = Path(__file__).parent / "data"
BACKBONES = ("vgg19", "googlenet", "inception_v3")
WEIGHT_SEED, IMAGE_SEED = 0, 1
SAMPLES = 64  # pooled feature values kept, evenly spaced
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def reference_path(backbone: str) -> Path:
    return DATA / f"torchvision_{backbone}.json"


def reference_state_dict(shapes: dict[str, list[int]], seed: int = WEIGHT_SEED) -> dict[str, torch.Tensor]:
    """Deterministic weights for a key -> shape list, each tensor seeded by its key (so any subset of keys
    gets the same values); He-scaled, so activations stay moderate in deep networks."""
    state = {}
    for key, shape in shapes.items():
        generator = torch.Generator().manual_seed(seed + zlib.crc32(key.encode()))
        if len(shape) > 1:
            value = torch.randn(shape, generator=generator) * math.sqrt(2 / math.prod(shape[1:]))
        elif key.endswith(("running_var", ".weight")):  # batch-norm variance and scale
            value = torch.rand(shape, generator=generator) + 0.5
        else:
            value = torch.randn(shape, generator=generator) * 0.1
        state[key] = value
    return state


def reference_image(size: int) -> torch.Tensor:
    """The seeded [0, 1] RGB image (1, 3, size, size) the reference features are computed from."""
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(IMAGE_SEED))


def sampled(features: torch.Tensor) -> list[float]:
    """``SAMPLES`` evenly spaced values of a (1, width) feature vector."""
    step = features.shape[1] // SAMPLES
    return features[0, ::step][:SAMPLES].tolist()


def _torchvision_models(models_dir: Path) -> dict[str, types.ModuleType]:
    """torchvision's vgg, googlenet and inception modules, loaded with stubs for the rest of torchvision."""
    stubs = {name: types.ModuleType(name) for name in (
        "torchvision", "torchvision.utils", "torchvision.transforms", "torchvision.transforms._presets",
        "torchvision.models", "torchvision.models._api", "torchvision.models._meta", "torchvision.models._utils")}
    stubs["torchvision.utils"]._log_api_usage_once = lambda obj: None
    stubs["torchvision.transforms._presets"].ImageClassification = object
    stubs["torchvision.models._api"].Weights = lambda url, transforms, meta: types.SimpleNamespace(url=url, meta=meta)
    stubs["torchvision.models._api"].WeightsEnum = Enum
    stubs["torchvision.models._api"].register_model = lambda name=None: lambda fn: fn
    stubs["torchvision.models._meta"]._IMAGENET_CATEGORIES = [str(index) for index in range(1000)]
    stubs["torchvision.models._utils"]._ovewrite_named_param = lambda kwargs, name, value: kwargs.update({name: value})
    stubs["torchvision.models._utils"].handle_legacy_interface = lambda **weights: lambda fn: fn
    sys.modules.update(stubs)
    modules = {}
    for name in ("vgg", "googlenet", "inception"):
        spec = importlib.util.spec_from_file_location(f"torchvision.models.{name}", models_dir / f"{name}.py")
        modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules[name])
    return modules


def _write_references(models_dir: Path, version: str) -> None:
    tv = _torchvision_models(models_dir)
    # built as torchvision builds them to load the ImageNet weights (aux heads on, no random init)
    networks = {
        "vgg19": (tv["vgg"].VGG(tv["vgg"].make_layers(tv["vgg"].cfgs["E"]), init_weights=False),
                  tv["vgg"].VGG19_Weights.IMAGENET1K_V1.value, 224),
        "googlenet": (tv["googlenet"].GoogLeNet(aux_logits=True, transform_input=True, init_weights=False),
                      tv["googlenet"].GoogLeNet_Weights.IMAGENET1K_V1.value, 224),
        "inception_v3": (tv["inception"].Inception3(aux_logits=True, transform_input=True, init_weights=False),
                         tv["inception"].Inception_V3_Weights.IMAGENET1K_V1.value, 299),
    }
    for backbone, (network, weights, size) in networks.items():
        shapes = {key: list(value.shape) for key, value in network.state_dict().items()
                  if not key.endswith("num_batches_tracked")}
        network.load_state_dict(reference_state_dict(shapes))
        network.eval()
        mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
        x = (reference_image(size) - mean) / std
        with torch.no_grad():
            if backbone == "vgg19":
                features = F.adaptive_avg_pool2d(network.features(x), 1).flatten(1)
            else:
                network.fc = nn.Identity()
                features = network(x)
        reference = {"torchvision": version, "url": weights.url, "input_size": size,
                     "min_size": weights.meta["min_size"][0], "state_dict": shapes,
                     "pooled_features": {"width": features.shape[1], "values": sampled(features)}}
        reference_path(backbone).write_text(json.dumps(reference, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    _write_references(Path(sys.argv[1]), sys.argv[2])
