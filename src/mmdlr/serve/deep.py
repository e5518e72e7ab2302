"""One modality's trained CNN with the bundle's own inference preprocessing (``bundle/configs/inference.json``).

The network and transforms are parsed from the bundle config with the run's overrides, so the served
preprocessing is the one the run used, never a copy. Torch calls are serialised by a lock: the network
(and the Grad-CAM hooks registered on it) are shared by concurrent requests.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.visualize import GradCAM

from mmdlr.deep.features import pooled_features
from mmdlr.deep.gradcam import ROI_KEY, overlay, roi_heatmap
from mmdlr.deep.table import feature_column
from mmdlr.pipeline.bundle import CONFIGS, bundle_overrides
from mmdlr.pipeline.config import RunConfig

# The inference config keeps labels and splits for its feature table; a new patient has neither,
# and Grad-CAM needs the ROI before resizing.
SERVED_KEYS = ["image", ROI_KEY, "patient_id"]


class ModalityNetwork:
    """The trained network of one modality: pooled features, head probability and Grad-CAM overlays."""

    def __init__(self, config: RunConfig, deep_dir: Path, modality: str, lock: threading.Lock):
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "inference.json"))
        parser.update(bundle_overrides(config, deep_dir, modality) | {"keep_keys": SERVED_KEYS})
        self.modality = modality
        self.preprocessing = parser.get_parsed_content("preprocessing")
        self.network = parser.get_parsed_content("network").eval().to(memory_format=torch.channels_last)
        self.device = parser.get_parsed_content("device")
        self.precision = parser.get_parsed_content("precision")
        self.cam = GradCAM(nn_module=self.network, target_layers=self.network.gradcam_layer)
        self.lock = lock

    def prepare(self, image: Path, masks: list[Path], patient_id: str | None) -> dict:
        """The bundle's preprocessing of one case (load, check, crop, scale, resize, normalise)."""
        return self.preprocessing({"image": str(image), "mask": [str(m) for m in masks], "patient_id": patient_id})

    def features(self, item: dict) -> tuple[dict[str, float], float]:
        """Pooled features as ``deep_0000``... columns and the head's malignant probability."""
        with self.lock:
            pooled, probability = pooled_features(self.network, torch.as_tensor(item["image"])[None].to(self.device),
                                                  self.precision)
        values = pooled[0].cpu().numpy()
        return {feature_column(i): float(v) for i, v in enumerate(values)}, probability.item()

    def gradcam_overlay(self, item: dict) -> np.ndarray:
        """RGB uint8 Grad-CAM overlay (predicted class) on the ROI, as in the run's report."""
        with self.lock:
            heatmap = roi_heatmap(self.cam, item, device=self.device)
        return overlay(np.asarray(item[ROI_KEY])[0], heatmap)
