"""Pooled deep features of each ROI, computed once with the network in eval mode."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from monai.data import DataLoader
from torch.utils.data import Dataset

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
    return pooled, torch.softmax(network.head(pooled), dim=1)[:, 1]


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
    """Cached pooled features as ``{"image": features, "label": label}`` items, to train the head alone.

    With a frozen backbone, training the head on these gives the same updates as passing every image
    through the whole network each epoch (same batches, same order), at a fraction of the cost.
    """

    def __init__(self, network: DeepClassifier, dataset: Dataset, batch_size: int = 8,
                 device: str | torch.device = "cpu", num_workers: int = 0, precision: str = "float32"):
        if any(p.requires_grad for p in network.backbone.parameters()):
            raise ValueError("cached features need a frozen backbone (mode 'frozen'); fine-tuning trains on images")
        cached = extract_features(network, dataset, batch_size, device, num_workers, "caching features", precision)
        self.features = torch.from_numpy(cached.features)
        self.labels = torch.as_tensor(cached.meta["label"], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.features[index], "label": self.labels[index]}
