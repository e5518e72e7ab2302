"""Pre-processing steps per feature family; the classifier step is appended by :func:`model_search`.

Every step list starts by selecting its own columns by name, so a model can be handed the full
feature frame (all modalities, both families) and still see only the columns it was built for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.feature_selection import VarianceThreshold
from sklearn.pipeline import FeatureUnion, Pipeline
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


def harmonized(steps: Steps, harmonizer=None) -> Steps:
    """``steps`` with a clone of ``harmonizer`` (:class:`~mmdlr.select.harmonize.ComBatHarmonizer`) right after
    the imputation, the steps up to it handing on DataFrames indexed by patient id (by which it finds each
    patient's centre); ``steps`` unchanged without one."""
    if harmonizer is None:
        return steps
    at = [name for name, _ in steps].index("impute") + 1
    return [*((name, step.set_output(transform="pandas")) for name, step in steps[:at]),
            ("combat", clone(harmonizer)), *steps[at:]]


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


def deep_steps(blocks: Mapping[str, Sequence[str]], n_components: int = 32, random_state: int = 0,
               harmonizer=None) -> Steps:
    """Per modality block: impute -> (ComBat ``harmonizer``) -> standardise -> PCA(n_components); blocks are
    then concatenated.

    The paper reduces each modality's 2048 CNN features to 32 principal components (section 3.3).
    """
    per_block = [
        (name, Pipeline(harmonized([
            ("impute", FiniteMedianImputer()),
            ("scale", StandardScaler()),
            ("pca", ClippedPCA(n_components=n_components, random_state=random_state)),
        ], harmonizer)), list(columns))
        for name, columns in blocks.items()
    ]
    return [("blocks", ColumnTransformer(per_block, remainder="drop"))]


RAD_DF_READING = (
    "Section 3.4 reads: 'In traditional image radiomics, after the three sets of eigenvalues are spliced in the "
    "same dimension, the number of dimensions is reduced to 108 according to PCA. After the two types of features "
    "were generated, we repeated the above operation, first splicing and then PCA dimension reduction. Finally, we "
    "obtained 108-dimensional features containing 51 sets of deep feature values and 57 sets of traditional image "
    "radiomic feature values.' A PCA over the spliced families gives components that mix both, which cannot be "
    "counted as 57 radiomic and 51 deep, so mmdlr reduces each family on its own and splices the results: the "
    "radiomics of all modalities spliced and selected as in section 2.4 (Mann-Whitney, Spearman, LASSO), then "
    "PCA(57); the deep features reduced per modality as in section 3.3 (PCA(32) each), spliced, then PCA(51); "
    "the 57 + 51 = 108 columns standardised for the classifier."
)


def rad_df_steps(radiomics: Steps, deep: Steps, n_radiomics: int = 57, n_deep: int = 51,
                 random_state: int = 0) -> Steps:
    """Rad + DF (paper section 3.4): each family reduced on its own, then the two spliced and standardised.

    ``radiomics`` and ``deep`` are the families' own steps (:func:`radiomics_steps`, :func:`deep_steps` over
    all modalities); each gets a final PCA (``n_radiomics``, ``n_deep``; clipped like every
    :class:`~mmdlr.select.ClippedPCA`, so a LASSO that keeps fewer than 57 radiomic features keeps them all,
    rotated). The reading of the paper's ambiguous text is :data:`RAD_DF_READING`. Routed ``groups`` reach
    the LASSO inside the radiomics branch.
    """
    branches = [
        ("radiomics", Pipeline([*radiomics, ("pca", ClippedPCA(n_radiomics, random_state))])),
        ("deep", Pipeline([*deep, ("pca", ClippedPCA(n_deep, random_state))])),
    ]
    return [("families", FeatureUnion(branches)), ("scale", StandardScaler())]


def pca_of_all_steps(columns: Sequence[str], n_components: int = 108, random_state: int = 0) -> Steps:
    """PCA of all features: every radiomic and deep column, no selection -> standardise -> PCA(108).

    Not the paper's Rad + DF (see :func:`rad_df_steps`); an ablation that lets the PCA mix the families.
    """
    return [
        *_standardised(columns),
        ("pca", ClippedPCA(n_components=n_components, random_state=random_state)),
    ]
