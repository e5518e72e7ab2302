"""Pooled deep features of each ROI, computed once with the network in eval mode."""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader
from torch.utils.data import Dataset, Subset

from mmdlr.atomic import atomic_path
from mmdlr.deep.classifier import DeepClassifier
from mmdlr.terminal import track

META_KEYS = ("patient_id", "label", "split", "group", "center")  # center: "" for items without one
PRECISIONS = ("float32", "bfloat16")


@dataclass
class Features:
    """Per-case pooled features (n, width), the head's malignant probability and the cases' metadata."""

    features: np.ndarray
    prob_malignant: np.ndarray
    meta: dict[str, list]


@contextmanager
def evaluating_channels_last(network: DeepClassifier):
    """``network`` in eval mode with channels-last convolution weights, restored afterwards.

    Channels-last (NHWC) lets oneDNN run the convolutions without layout reorders: about 1.5x the
    images/s of ResNet-50 on a CPU, features equal to float32 rounding (docs/benchmarks.md).
    """
    was_training = network.training
    network.eval().to(memory_format=torch.channels_last)
    try:
        yield network
    finally:
        network.to(memory_format=torch.contiguous_format).train(was_training)


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ``ValueError`` naming them."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision


@torch.no_grad()
def pooled_features(network: DeepClassifier, images: torch.Tensor,
                    precision: str = "float32") -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 pooled features of a batch and the head's malignant probability (``network`` in eval mode).

    ``"bfloat16"`` runs the backbone under autocast (AMX/AVX-512-BF16 CPUs and recent GPUs run it 2-3x
    faster); the features then differ from float32 (median per feature: 2.5% of its range for ResNet-50, 13% for
    EfficientNet-Lite0) with the same downstream AUC on BUSI, see docs/benchmarks.md.
    """
    images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=check_precision(precision) == "bfloat16"):
        pooled = network.features(images).float()
    return pooled, head_probability(network, pooled)


def head_probability(network: DeepClassifier, pooled: torch.Tensor) -> torch.Tensor:
    """The head's malignant probability of a batch of pooled features."""
    return torch.softmax(network.head(pooled), dim=1)[:, 1]


def extract_features(network: DeepClassifier, dataset: Dataset, batch_size: int = 8,
                     device: str | torch.device = "cpu", num_workers: int = 0,
                     description: str = "deep features", precision: str = "float32") -> Features:
    """Run ``network`` (eval mode, channels-last) over ``dataset`` items with ``image`` and the :data:`META_KEYS`.

    Batches of 8 keep a ResNet-50 layer's activations in a CPU's cache: faster than 32 (docs/benchmarks.md).
    """
    check_precision(precision)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    features, probs, meta = [], [], {key: [] for key in META_KEYS}
    with evaluating_channels_last(network):
        for batch in track(loader, len(loader), description, "batch"):
            pooled, prob = pooled_features(network, batch["image"].to(device), precision)
            features.append(pooled.cpu())
            probs.append(prob.cpu())
            for key in META_KEYS:
                values = batch[key] if key in batch else [""] * len(prob)
                meta[key] += values.tolist() if isinstance(values, torch.Tensor) else list(values)
    width = network.spec.width
    return Features(features=torch.cat(features).numpy() if features else np.zeros((0, width), np.float32),
                    prob_malignant=torch.cat(probs).numpy() if probs else np.zeros(0, np.float32), meta=meta)


class FeatureDataset(Dataset):
    """Cached pooled features as ``{"image": features, "label": label}`` items, to train or evaluate the head alone.

    With a frozen backbone, training the head on these gives the same updates as passing every image
    through the whole network each epoch (same batches, same order), at a fraction of the cost. With a
    ``feature_cache`` (:func:`save_feature_cache`) the cases in it are not passed through the backbone again and
    the others are added to it (:func:`extract_features_reusing`; ``dataset`` then a MONAI dataset).
    """

    def __init__(self, network: DeepClassifier, dataset: Dataset, batch_size: int = 8,
                 device: str | torch.device = "cpu", num_workers: int = 0, precision: str = "float32",
                 feature_cache: str | os.PathLike | None = None):
        if any(p.requires_grad for p in network.backbone.parameters()):
            raise ValueError("cached features need a frozen backbone (mode 'frozen'); fine-tuning trains on images")
        cached = (extract_features(network, dataset, batch_size, device, num_workers, "caching features", precision)
                  if feature_cache is None else
                  extract_features_reusing(network, dataset, feature_cache, batch_size, device, num_workers, precision))
        self.features = torch.from_numpy(cached.features)
        self.labels = torch.as_tensor(cached.meta["label"], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.features[index], "label": self.labels[index]}


def run_with_threads(engine, threads: int | None) -> None:
    """``engine.run()`` with ``threads`` torch intra-op threads (None: as they are), restored afterwards.

    A head trained on cached features (:class:`FeatureDataset`) works on a few rows of pooled features per batch:
    there a second thread only synchronises. One thread trains the same weights at a fifth of the CPU seconds
    (0.04 instead of 0.2 per epoch on 96 demo patients, docs/benchmarks.md, "The demo").
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        engine.run()
    finally:
        torch.set_num_threads(previous)

def case_key(case: dict) -> str:
    """What identifies a case's ROI in a feature cache: its patient, image and mask files."""
    return json.dumps([case["patient_id"], case["image"], case["mask"]])


def backbone_digest(network: DeepClassifier) -> str:
    """SHA-256 of the backbone's weights and buffers: equal digests compute equal features."""
    digest = hashlib.sha256()
    for name, tensor in network.backbone.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_feature_cache(path: str | os.PathLike, network: DeepClassifier, precision: str, cases: list[dict],
                       parts: list[FeatureDataset | None]) -> Path:
    """Save the frozen-backbone features training cached (``parts``: its :class:`FeatureDataset` of each part,
    ``cases`` their cases in order), so :func:`extract_features_reusing` need not compute them again."""
    if any(part is None for part in parts):
        raise ValueError("a feature cache needs mode 'frozen' (training on cached features); fine-tuning caches none")
    return _write_feature_cache(path, [case_key(case) for case in cases],
                                torch.cat([part.features for part in parts]).numpy(), network, precision)


def _write_feature_cache(path: str | os.PathLike, keys: list[str], features: np.ndarray, network: DeepClassifier,
                         precision: str) -> Path:
    """Write cases' features (``keys`` from :func:`case_key`) with ``network``'s backbone digest, atomically."""
    with atomic_path(path) as temp, temp.open("wb") as file:
        np.savez(file, keys=np.array(keys, dtype=str), features=features,
                 backbone=backbone_digest(network), precision=check_precision(precision))
    return Path(path)


def read_feature_cache(path: str | os.PathLike, network: DeepClassifier, precision: str) -> dict[str, np.ndarray]:
    """Each cached case's pooled features by :func:`case_key`; a ``ValueError`` if ``network``'s backbone or
    ``precision`` is not the one that computed them."""
    with np.load(path, allow_pickle=False) as cache:
        if str(cache["backbone"]) != backbone_digest(network) or str(cache["precision"]) != precision:
            raise ValueError(f"feature cache {path} was computed by another backbone or precision than this "
                             f"network's at {precision}: delete it, or pass no feature_cache")
        return dict(zip(cache["keys"].tolist(), cache["features"], strict=True))


def extract_features_reusing(network: DeepClassifier, dataset: Dataset, feature_cache: str | os.PathLike,
                             batch_size: int = 8, device: str | torch.device = "cpu", num_workers: int = 0,
                             precision: str = "float32") -> Features:
    """:func:`extract_features` of a MONAI ``dataset`` whose cases in ``feature_cache`` (training's frozen-backbone
    features, :func:`save_feature_cache`) are neither loaded nor passed through the backbone: only the head runs.
    The cases it passes through the backbone are added to ``feature_cache``, so each case passes once."""
    cached = read_feature_cache(feature_cache, network, precision)
    keys = [case_key(case) for case in dataset.data]
    reused = [i for i, key in enumerate(keys) if key in cached]
    new = [i for i, key in enumerate(keys) if key not in cached]
    computed = extract_features(network, Subset(dataset, new), batch_size, device, num_workers, precision=precision)
    features = np.zeros((len(keys), network.spec.width), np.float32)
    features[new] = computed.features
    if reused:
        features[reused] = np.stack([cached[keys[i]] for i in reused])
    if new:
        cached |= {keys[i]: features[i] for i in new}
        _write_feature_cache(feature_cache, list(cached), np.stack(list(cached.values())), network, precision)
    probability = np.zeros(len(keys), np.float32)
    probability[new] = computed.prob_malignant
    with evaluating_channels_last(network), torch.no_grad():
        for start in range(0, len(reused), batch_size):
            batch = reused[start:start + batch_size]
            probability[batch] = head_probability(network, torch.from_numpy(features[batch]).to(device)).cpu().numpy()
    return Features(features=features, prob_malignant=probability,
                    meta={key: [case.get(key, "") for case in dataset.data] for key in META_KEYS})
