"""Real data: pretrained EfficientNet-Lite0 features of BUSI lesion boxes separate benign from malignant.

Measured (150 images: 101 benign, 49 malignant drawn with seed 0; box = union of the image's masks;
5-fold stratified CV, standardised features, L2 logistic regression C=0.1): mean AUC 0.865 over five CV
seeds (0.845-0.884). The same pipeline with randomly initialised weights gives 0.76, so the threshold of
0.80 fails when the ImageNet weights are not loaded or the port is wrong, with a margin of about 0.05
below the pretrained result for CV noise. BUSI has near-duplicate frames without patient IDs, which can
flatter a CV estimate a little; the pair known to carry both labels is left out.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch.utils.data import Dataset

from mmdlr.deep import DeepClassifier, extract_features, get_backbone, load_pretrained

N_IMAGES = 150
AUC_THRESHOLD = 0.80
BOTH_LABELS = {"benign (433).png", "malignant (145).png"}


def busi_images(root, cls: str) -> list:
    files = [f for f in (root / cls).glob(f"{cls} (*).png") if f.name not in BOTH_LABELS]
    return sorted(files, key=lambda f: int(re.search(r"\((\d+)\)", f.name).group(1)))


def lesion_box(image_path) -> np.ndarray:
    """The grey image cropped to the bounding box of the union of its masks, in [0, 1]."""
    image = np.asarray(Image.open(image_path).convert("L"), dtype=np.float32) / 255
    mask = np.zeros(image.shape, dtype=bool)
    for mask_path in image_path.parent.glob(f"{image_path.stem}_mask*.png"):
        mask |= np.asarray(Image.open(mask_path).convert("L")) > 0
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return image[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]


class BusiBoxes(Dataset):
    """Lesion boxes resized to 224x224, 3 channels, normalised for EfficientNet-Lite0."""

    def __init__(self, items: list[tuple]):
        spec = get_backbone("efficientnet_lite0")
        self.items = items
        self.mean, self.std = torch.tensor(spec.mean)[:, None, None], torch.tensor(spec.std)[:, None, None]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        path, label = self.items[index]
        box = np.array(Image.fromarray(lesion_box(path)).resize((224, 224), Image.BILINEAR))
        image = torch.from_numpy(box)[None].repeat(3, 1, 1)
        return {"image": (image - self.mean) / self.std, "label": label, "patient_id": path.stem,
                "split": "", "group": ""}


@pytest.mark.slow
@pytest.mark.busi
def test_pretrained_lite0_features_separate_busi_classes(busi_dir):
    benign, malignant = busi_images(busi_dir, "benign"), busi_images(busi_dir, "malignant")
    n_benign = round(N_IMAGES * len(benign) / (len(benign) + len(malignant)))
    rng = np.random.default_rng(0)
    items = [(f, 0) for f in rng.choice(benign, n_benign, replace=False)] + \
            [(f, 1) for f in rng.choice(malignant, N_IMAGES - n_benign, replace=False)]
    network = load_pretrained(DeepClassifier("efficientnet_lite0"), "imagenet")
    result = extract_features(network, BusiBoxes(items), batch_size=32)
    labels = np.array(result.meta["label"])
    assert result.features.shape == (N_IMAGES, 1280)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    auc = cross_val_score(model, result.features, labels, cv=folds, scoring="roc_auc").mean()
    print(f"BUSI EfficientNet-Lite0 feature CV AUC: {auc:.3f} (threshold {AUC_THRESHOLD})")
    assert auc > AUC_THRESHOLD
