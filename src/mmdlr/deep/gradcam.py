"""Grad-CAM heatmaps of the classifier, resampled to each ROI and saved as PNG overlays."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from monai.visualize import GradCAM
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from mmdlr.atomic import atomic_path

ROI_KEY = "roi"
OVERLAY_ALPHA = 0.4


def roi_heatmap(cam: GradCAM, item: dict, class_index: int | None = None,
                device: str | torch.device = "cpu") -> np.ndarray:
    """Grad-CAM map in [0, 1] for one item, resampled from the network input to the ROI's shape.

    ``item["image"]`` is the network input (C, H, W); ``item["roi"]`` the ROI before resizing (1, h, w).
    ``class_index`` None explains the predicted class. Input gradients are enabled so the map exists
    with a frozen backbone.
    """
    x = torch.as_tensor(item["image"])[None].to(device).float().requires_grad_(True)
    heat = cam(x, class_idx=class_index)
    shape = tuple(np.asarray(item[ROI_KEY]).shape[-2:])
    heat = F.interpolate(heat.detach().float(), size=shape, mode="bilinear", align_corners=False)
    return heat[0, 0].clamp(0, 1).cpu().numpy()


def overlay(roi: np.ndarray, heatmap: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """RGB uint8 image: the grey ROI (values in [0, 1]) blended with the heatmap in the jet colour map."""
    grey = np.repeat(np.clip(roi, 0, 1)[..., None], 3, axis=-1)
    colour = colormaps["jet"](heatmap)[..., :3]
    return np.round(255 * ((1 - alpha) * grey + alpha * colour)).astype(np.uint8)


def save_gradcam(cam: GradCAM, dataset: Dataset, out_dir: str | os.PathLike, class_index: int | None = None,
                 device: str | torch.device = "cpu") -> list[Path]:
    """Write ``<patient_id>_gradcam.png`` (overlay) and ``<patient_id>_heatmap.npy`` (float map) per item."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for index in tqdm(range(len(dataset)), desc="grad-cam", unit="roi", leave=False):
        item = dataset[index]
        heatmap = roi_heatmap(cam, item, class_index, device)
        png = out_dir / f"{item['patient_id']}_gradcam.png"
        with atomic_path(png) as temp:
            Image.fromarray(overlay(np.asarray(item[ROI_KEY])[0], heatmap)).save(temp, format="PNG")
        with atomic_path(out_dir / f"{item['patient_id']}_heatmap.npy") as temp:
            with open(temp, "wb") as handle:
                np.save(handle, heatmap.astype(np.float32))
        written.append(png)
    return written
