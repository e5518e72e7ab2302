"""Synthetic feature tables with a known structure, for the analysis tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def write_feature_tables(directory: Path, n_patients: int = 120, modalities=("mg", "mri", "us"), shift: float = 1.0,
                         n_radiomics: int = 12, n_deep: int = 48, missing: dict[str, float] | None = None,
                         seed: int = 0, split: bool = False) -> Path:
    """radiomics_<mod>.csv and deep_<mod>.csv for ``modalities``.

    Each modality sees the label through its own noisy signal ``z = shift * y + N(0, 1)`` (independent
    per modality, so combining modalities helps); a few features are ``z`` plus a little noise, one is
    a near-duplicate of the first, the rest are pure noise. ``missing`` drops that fraction of patients'
    rows per modality.
    """
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    patients = [f"P{i:03d}" for i in range(n_patients)]
    labels = (rng.random(n_patients) < 0.6).astype(int)
    meta = pd.DataFrame({"patient_id": patients, "label": labels, "group": ""})
    meta["split"] = np.where(rng.random(n_patients) < 0.2, "test", "train") if split else ""
    for modality in modalities:
        signal = shift * labels + rng.normal(size=n_patients)
        keep = rng.random(n_patients) >= (missing or {}).get(modality, 0.0)
        radiomics = rng.normal(size=(n_patients, n_radiomics))
        radiomics[:, :3] = signal[:, None] + 0.3 * rng.normal(size=(n_patients, 3))
        radiomics[:, 3] = radiomics[:, 0] + 0.01 * rng.normal(size=n_patients)
        radiomics_columns = [f"original_firstorder_F{j}" for j in range(n_radiomics)]
        table = pd.concat([meta, pd.DataFrame(radiomics, columns=radiomics_columns)], axis=1)
        table["diagnostics_Versions_PyRadiomics"] = "3.1"
        table[keep].to_csv(directory / f"radiomics_{modality}.csv", index=False)
        deep = rng.normal(size=(n_patients, n_deep)) + np.outer(signal, rng.normal(size=n_deep))
        table = pd.concat([meta, pd.DataFrame(deep, columns=[f"deep_{j:04d}" for j in range(n_deep)])], axis=1)
        table["head_prob_malignant"] = rng.random(n_patients)
        table[keep].to_csv(directory / f"deep_{modality}.csv", index=False)
    return directory
