"""`mmdlr import-busi`: a US-only manifest from the BUSI folder, with duplicates found and removed.

BUSI (Al-Dhabyani et al. 2020) has no patient IDs and holds the same image under both labels
(``benign (433)`` = ``malignant (145)``) and near-duplicate frames of the same lesion. Images are
grouped when they are byte-identical in pixels, when their downsampled gradient images correlate above
``same_image`` (the same picture, rescaled or re-annotated), or above ``similarity`` while their lesion
masks overlap with IoU above ``mask_iou`` (another frame of the same lesion). A group with both labels
is dropped whole; of a same-label group the first image is kept (or all are kept with a shared
``group`` when ``keep_duplicates`` is set, so they are never split apart).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.cluster.hierarchy import DisjointSet
from tqdm.auto import tqdm

from mmdlr.atomic import write_csv
from mmdlr.io.manifest import MASK_SEPARATOR

CLASSES = ("benign", "malignant")
THUMBNAIL = 64
NAME = re.compile(r"^(benign|malignant) \((\d+)\)\.png$")


@dataclass
class BusiImport:
    """The written manifest, its rows, and the images removed with the reason."""

    manifest_path: Path
    manifest: pd.DataFrame
    removed: pd.DataFrame


def _scan(root: Path) -> pd.DataFrame:
    rows = []
    for cls in CLASSES:
        for image in sorted((root / cls).glob("*.png")):
            match = NAME.match(image.name)
            if not match:
                continue
            masks = sorted(image.parent.glob(f"{image.stem}_mask*.png"))
            rows.append({"patient_id": f"{cls}_{int(match.group(2)):03d}", "label": cls,
                         "number": int(match.group(2)), "us_image": str(image.resolve()),
                         "us_mask": MASK_SEPARATOR.join(str(m.resolve()) for m in masks)})
    if not rows:
        raise FileNotFoundError(f"no BUSI images under {root}/benign or {root}/malignant")
    return pd.DataFrame(rows).sort_values(["label", "number"], ignore_index=True)


def _fingerprints(table: pd.DataFrame, progress: bool) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Pixel hash, normalised gradient thumbnail, and thumbnail-sized lesion mask per image."""
    hashes, gradients, masks = [], [], []
    for image_path, mask_cell in tqdm(zip(table["us_image"], table["us_mask"]), total=len(table),
                                      desc="fingerprint BUSI", unit="image", disable=not progress):
        grey = Image.open(image_path).convert("L")
        hashes.append(hashlib.sha256(np.asarray(grey).tobytes()).hexdigest())
        thumb = np.asarray(grey.resize((THUMBNAIL, THUMBNAIL), Image.BILINEAR), dtype=float)
        gradient = np.hypot(*np.gradient(thumb)).ravel()
        gradients.append((gradient - gradient.mean()) / (gradient.std() + 1e-9))
        lesion = np.zeros((THUMBNAIL, THUMBNAIL), dtype=bool)
        for mask_path in filter(None, mask_cell.split(MASK_SEPARATOR)):
            small = Image.open(mask_path).convert("L").resize((THUMBNAIL, THUMBNAIL), Image.NEAREST)
            lesion |= np.asarray(small) > 0
        masks.append(lesion.ravel())
    return hashes, np.array(gradients), np.array(masks)


def find_duplicate_groups(table: pd.DataFrame, similarity: float = 0.93, mask_iou: float = 0.7,
                          same_image: float = 0.975, progress: bool = True) -> list[list[int]]:
    """Row indices of images that are exact or near duplicates of each other (groups of >= 2)."""
    hashes, gradients, masks = _fingerprints(table, progress)
    groups = DisjointSet(range(len(table)))
    first_with_hash: dict[str, int] = {}
    for index, digest in enumerate(hashes):
        groups.merge(first_with_hash.setdefault(digest, index), index)
    correlation = gradients @ gradients.T / gradients.shape[1]
    overlap = masks.astype(np.float32) @ masks.T.astype(np.float32)
    areas = masks.sum(axis=1)
    union = areas[:, None] + areas[None, :] - overlap
    iou = np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)
    for i, j in zip(*np.nonzero(np.triu((correlation >= same_image) | (correlation >= similarity) & (iou >= mask_iou), k=1))):
        groups.merge(int(i), int(j))
    return [sorted(s) for s in groups.subsets() if len(s) > 1]


def import_busi(root: str | os.PathLike, out_csv: str | os.PathLike, similarity: float = 0.93,
                mask_iou: float = 0.7, same_image: float = 0.975, keep_duplicates: bool = False,
                progress: bool = True) -> BusiImport:
    """Write a US-only manifest of BUSI and ``<out>_removed.csv`` listing what was removed and why."""
    table = _scan(Path(root))
    table["group"] = ""
    drop, removed = set(), []
    for members in find_duplicate_groups(table, similarity, mask_iou, same_image, progress):
        ids = table.loc[members, "patient_id"].tolist()
        if table.loc[members, "label"].nunique() > 1:
            drop.update(members)
            removed += [{"patient_id": table.at[m, "patient_id"], "reason": "same lesion under both labels",
                         "duplicate_of": " ".join(i for i in ids if i != table.at[m, "patient_id"])}
                        for m in members]
        elif keep_duplicates:
            table.loc[members, "group"] = f"dup_{ids[0]}"
        else:
            drop.update(members[1:])
            removed += [{"patient_id": table.at[m, "patient_id"], "reason": "duplicate of a kept image",
                         "duplicate_of": ids[0]} for m in members[1:]]
    manifest = table.drop(index=sorted(drop)).reset_index(drop=True)
    manifest = manifest[["patient_id", "label", "group", "us_image", "us_mask"]]
    out_csv = Path(out_csv)
    removed_table = pd.DataFrame(removed, columns=["patient_id", "reason", "duplicate_of"])
    write_csv(removed_table, out_csv.with_name(f"{out_csv.stem}_removed.csv"))
    write_csv(manifest, out_csv)
    return BusiImport(out_csv, manifest, removed_table)
