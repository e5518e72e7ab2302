"""Grad-CAM heatmaps of the classifier, resampled to each ROI, saved as PNG overlays with the ROI and mask they
were computed on, and drawn as report panels (ROI, ROI with the mask outline, overlay with a colour bar)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.figure import Figure
from monai.visualize import GradCAM
from PIL import Image
from torch.utils.data import Dataset

from mmdlr.atomic import atomic_path
from mmdlr.terminal import track

ROI_KEY = "roi"
MASK_KEY = "mask"
OVERLAY_ALPHA = 0.4
ROI_ARRAYS = "{patient_id}_roi.npz"


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
    """Write per item ``<patient_id>_gradcam.png`` (overlay), ``<patient_id>_heatmap.npy`` (float map) and,
    where the item keeps its mask, ``<patient_id>_roi.npz`` (``roi``: the ROI in [0, 1] the map was computed
    on; ``mask``: the lesion mask on the same grid), from which :func:`gradcam_figure` draws the report panels."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for index in track(range(len(dataset)), len(dataset), "grad-cam", "roi"):
        item = dataset[index]
        heatmap = roi_heatmap(cam, item, class_index, device)
        roi = np.asarray(item[ROI_KEY])[0]
        png = out_dir / f"{item['patient_id']}_gradcam.png"
        with atomic_path(png) as temp:
            Image.fromarray(overlay(roi, heatmap)).save(temp, format="PNG")
        with atomic_path(out_dir / f"{item['patient_id']}_heatmap.npy") as temp:
            with open(temp, "wb") as handle:
                np.save(handle, heatmap.astype(np.float32))
        if MASK_KEY in item:
            with atomic_path(out_dir / ROI_ARRAYS.format(patient_id=item["patient_id"])) as temp:
                with open(temp, "wb") as handle:
                    np.savez_compressed(handle, roi=roi.astype(np.float32),
                                        mask=np.asarray(item[MASK_KEY])[0] > 0)
        written.append(png)
    return written


def heat_inside(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the Grad-CAM heat (sum of the map) that lies inside the lesion mask."""
    total = float(heatmap.sum())
    return float(heatmap[mask].sum()) / total if total > 0 else float("nan")


def gradcam_figure(roi: np.ndarray, mask: np.ndarray, heatmap: np.ndarray, title: str) -> Figure:
    """Three panels of equal, fixed size whatever the ROI's: the ROI, the ROI with the mask's outline, and the
    heat map over the ROI (outline in white) with its colour bar; ``title`` above them."""
    figure = Figure(figsize=(6.4, 2.55))
    axes = figure.subplots(1, 3, gridspec_kw={"left": 0.01, "right": 0.9, "bottom": 0.02, "top": 0.8,
                                              "wspace": 0.04})
    shown = {"cmap": "gray", "vmin": 0, "vmax": 1, "interpolation": "bilinear"}
    for axis, name in zip(axes, ("ROI", "ROI, lesion outline", "Grad-CAM over ROI")):
        axis.imshow(roi, **shown)
        axis.set_title(name, fontsize=8)
        axis.set_axis_off()
    axes[1].contour(mask.astype(float), levels=[0.5], colors="#ffd400", linewidths=1.2)
    heat = axes[2].imshow(heatmap, cmap="jet", vmin=0, vmax=1, alpha=OVERLAY_ALPHA + 0.1, interpolation="bilinear")
    axes[2].contour(mask.astype(float), levels=[0.5], colors="white", linewidths=0.8)
    bar = figure.colorbar(heat, cax=figure.add_axes((0.915, 0.08, 0.018, 0.66)))
    bar.set_label("Grad-CAM (0 = min, 1 = max)", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    figure.suptitle(title, fontsize=8.5, x=0.01, ha="left")
    return figure
