"""Clinical characteristics of the training and test patients (paper Table 1)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, mannwhitneyu, ttest_ind

from mmdlr.evaluate import Fold
from mmdlr.io.manifest import LABEL_NAMES, Manifest, parse_label

CATEGORICAL_MAX_LEVELS = 10
MISSING_VALUES = {"", "na", "n/a", "#n/a", "nan", "null", "none", "missing", "unknown", "?", "-"}


def _is_continuous(values: pd.Series) -> bool:
    """Numbers only (missing cells already dropped), more than ``CATEGORICAL_MAX_LEVELS`` distinct."""
    numeric = pd.to_numeric(values, errors="coerce")
    return bool(numeric.notna().all() and numeric.nunique() > CATEGORICAL_MAX_LEVELS)


def _continuous_rows(name: str, train: pd.Series, test: pd.Series) -> list[dict]:
    train, test = train.astype(float), test.astype(float)
    t = ttest_ind(train, test)
    return [{"variable": name, "level": "", "train": f"{train.mean():.2f} ± {train.std():.2f}",
             "test": f"{test.mean():.2f} ± {test.std():.2f}", "test_used": "t-test", "statistic": float(t.statistic),
             "p_value": float(t.pvalue), "p_mannwhitney": float(mannwhitneyu(train, test).pvalue)}]


def _categorical_rows(name: str, train: pd.Series, test: pd.Series) -> list[dict]:
    counts = pd.crosstab(pd.concat([train, test]), ["train"] * len(train) + ["test"] * len(test))
    counts = counts.reindex(columns=["train", "test"], fill_value=0)
    testable = counts.shape[0] > 1 and (counts.sum(axis=0) > 0).all()
    chi2 = chi2_contingency(counts.to_numpy()) if testable else None
    rows = [{"variable": name, "level": "", "train": "", "test": "", "test_used": "chi-square",
             "statistic": float(chi2.statistic) if chi2 else np.nan, "p_value": float(chi2.pvalue) if chi2 else np.nan,
             "p_mannwhitney": np.nan}]
    rows += [_level_row(name, str(level), n_train, n_test, len(train), len(test))
             for level, (n_train, n_test) in counts.iterrows()]
    return rows


def _level_row(name: str, level: str, n_train: int, n_test: int, train_total: int, test_total: int) -> dict:
    return {"variable": name, "level": level, "train": f"{n_train} ({100 * n_train / train_total:.1f}%)",
            "test": f"{n_test} ({100 * n_test / test_total:.1f}%)", "test_used": "", "statistic": np.nan,
            "p_value": np.nan, "p_mannwhitney": np.nan}


def clinical_table(manifest: Manifest, fold: Fold) -> pd.DataFrame | None:
    """Train vs test comparison of the manifest's pathology label, centre (when the manifest names centres)
    and clinical columns.

    Continuous variables (numeric with more than 10 distinct values): mean ± SD, t-test (Mann-Whitney p
    as well); others: n (%) per level, chi-square test. Missing cells (empty, NA, unknown, ...; see
    ``MISSING_VALUES``) are left out of both and counted on a "(missing)" line of the variable.
    The centre is always categorical. Returns None when the manifest has no clinical columns and no centres.
    """
    centers = [] if manifest.centers is None else [("center", manifest.centers)]
    if not manifest.clinical_columns and not centers:
        return None
    table = manifest.table.set_index("patient_id")
    pathology = table["label"].map(parse_label).map(dict(enumerate(LABEL_NAMES))).fillna("")
    rows = []
    for name, column in [("pathology", pathology), *centers] + [(c, table[c]) for c in manifest.clinical_columns]:
        present = column[~column.astype(str).str.strip().str.lower().isin(MISSING_VALUES)]
        train = present.reindex(pd.Index(fold.train)).dropna()
        test = present.reindex(pd.Index(fold.test)).dropna()
        if train.empty or test.empty:
            continue
        both = pd.concat([train, test])
        continuous = name != "center" and _is_continuous(both)
        rows += _continuous_rows(name, train, test) if continuous else _categorical_rows(name, train, test)
        missing = len(fold.train) - len(train), len(fold.test) - len(test)
        if any(missing):
            rows.append(_level_row(name, "(missing)", *missing, len(fold.train), len(fold.test)))
    return pd.DataFrame(rows)
