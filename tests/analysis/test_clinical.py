"""Table 1: numeric clinical columns stay numeric whatever their missing cells, and every missing cell is counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mmdlr.analysis.clinical import clinical_table
from mmdlr.evaluate import Fold
from mmdlr.io.manifest import Manifest


def _manifest(ages: list[str], menopause: list[str]) -> Manifest:
    n = len(ages)
    table = pd.DataFrame({"patient_id": [f"p{i:02d}" for i in range(n)], "label": [str(i % 2) for i in range(n)],
                          "us_image": "x.png", "us_mask": "x_mask.png", "age": ages, "menopause": menopause})
    return Manifest(Path("cohort.csv"), table, ["us"])


def test_numeric_column_with_missing_cells_stays_numeric_with_missing_count():
    rng = np.random.default_rng(0)
    ages = [f"{age:.1f}" for age in rng.uniform(30, 80, 40)]
    ages[3], ages[7], ages[30], ages[35] = "", "NA", "unknown", "nan"
    menopause = ["pre", "post"] * 20
    menopause[30] = ""
    fold = Fold("holdout", tuple(f"p{i:02d}" for i in range(30)), tuple(f"p{i:02d}" for i in range(30, 40)))
    table = clinical_table(_manifest(ages, menopause), fold)
    age = table[table["variable"] == "age"]
    assert age["level"].tolist() == ["", "(missing)"]  # one mean ± SD line, not a category per value
    assert age.iloc[0]["test_used"] == "t-test" and "±" in age.iloc[0]["train"]
    assert age.iloc[1][["train", "test"]].tolist() == ["2 (6.7%)", "2 (20.0%)"]
    train_ages = pd.to_numeric(pd.Series(ages[:30]), errors="coerce").dropna()
    assert age.iloc[0]["train"] == f"{train_ages.mean():.2f} ± {train_ages.std():.2f}"
    menopause_rows = table[table["variable"] == "menopause"]
    assert menopause_rows["level"].tolist() == ["", "post", "pre", "(missing)"]
    assert menopause_rows.iloc[-1][["train", "test"]].tolist() == ["0 (0.0%)", "1 (10.0%)"]
    assert "(missing)" not in table.loc[table["variable"] == "pathology", "level"].tolist()
