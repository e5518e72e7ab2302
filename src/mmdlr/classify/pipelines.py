"""Pre-processing steps per feature family; the classifier step is appended by :func:`model_search`.

Every step list starts by selecting its own columns by name, so a model can be handed the full
feature frame (all modalities, both families) and still see only the columns it was built for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sklearn.compose import ColumnTransformer
from sklearn.feature_selection import VarianceThreshold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mmdlr.select import ClippedPCA, FiniteMedianImputer, LassoSelector, MannWhitneyFilter, SpearmanRedundancyFilter

Steps = list[tuple[str, object]]


def _columns(columns: Sequence[str]) -> ColumnTransformer:
    return ColumnTransformer([("features", "passthrough", list(columns))], remainder="drop")


def _standardised(columns: Sequence[str]) -> Steps:
    """The named columns -> median-impute -> drop constant columns -> standardise."""
    return [
        ("columns", _columns(columns)),
        ("impute", FiniteMedianImputer()),
        ("variance", VarianceThreshold()),
        ("scale", StandardScaler()),
    ]


def radiomics_steps(
    columns: Sequence[str],
    p_threshold: float = 0.05,
    rho_threshold: float = 0.9,
    lasso_alphas: int = 10,
    fallback_k: int = 10,
    inner_folds: int = 3,
    random_state: int = 0,
) -> Steps:
    """impute -> drop constant -> standardise -> Mann-Whitney -> Spearman -> LASSO (paper section 2.4)."""
    return [
        *_standardised(columns),
        ("mannwhitney", MannWhitneyFilter(p_threshold=p_threshold, fallback_k=fallback_k)),
        ("spearman", SpearmanRedundancyFilter(rho_threshold=rho_threshold)),
        ("lasso", LassoSelector(n_alphas=lasso_alphas, cv=inner_folds, fallback_k=fallback_k,
                                random_state=random_state)),
    ]


def deep_steps(blocks: Mapping[str, Sequence[str]], n_components: int = 32, random_state: int = 0) -> Steps:
    """Per modality block: impute -> standardise -> PCA(n_components); blocks are then concatenated.

    The paper reduces each modality's 2048 CNN features to 32 principal components (section 3.3).
    """
    per_block = [
        (name, Pipeline([
            ("impute", FiniteMedianImputer()),
            ("scale", StandardScaler()),
            ("pca", ClippedPCA(n_components=n_components, random_state=random_state)),
        ]), list(columns))
        for name, columns in blocks.items()
    ]
    return [("blocks", ColumnTransformer(per_block, remainder="drop"))]


def combined_steps(columns: Sequence[str], n_components: int = 108, random_state: int = 0) -> Steps:
    """Radiomics and deep features of all modalities concatenated -> standardise -> PCA(108) (section 3.4)."""
    return [
        *_standardised(columns),
        ("pca", ClippedPCA(n_components=n_components, random_state=random_state)),
    ]
