"""The rows of the result tables (paper Tables 2-4) and the model that produces each row."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import StandardScaler

from mmdlr.analysis.config import AnalysisConfig
from mmdlr.analysis.features import REGION_SUFFIXES, TABLE_FAMILIES, FeatureSet, FeatureTableError, block_name
from mmdlr.classify import (chosen_classifier, deep_steps, harmonized, model_search, pca_of_all_steps, rad_df_steps,
                            radiomics_steps)
from mmdlr.fuse import AccuracyWeightedEnsemble, StackingFusion, block_presence, fusion_subsets
from mmdlr.select.harmonize import ComBatHarmonizer
from mmdlr.select.icc import ICCThresholdSelector

TABLE_NAMES = {"radiomics": "radiomics", "deep": "deep", "radiomics+deep": "fusion"}
SINGLE, EARLY, COMBINED, ENSEMBLE, STACKING = "single", "early", "combined", "ensemble", "stacking"
RAD_DF, PCA_OF_ALL = "Rad + DF", "PCA of all features"  # the COMBINED rows (see _family_search)


@dataclass(frozen=True)
class GridRow:
    """One line of a result table: a feature family, a method name and the blocks it uses."""

    family: str
    method: str
    kind: str
    blocks: tuple[str, ...]


@dataclass(frozen=True)
class SkippedRow:
    family: str
    method: str
    reason: str


def _modality_label(modalities) -> str:
    return "+".join(modality.upper() for modality in modalities)


def plan_rows(features: FeatureSet, config: AnalysisConfig) -> tuple[list[GridRow], list[SkippedRow]]:
    """All rows the config asks for; rows whose tables are absent or that lack patients are skipped."""
    if config.select.icc_threshold is not None and not features.perturbed:
        raise FeatureTableError("select.icc_threshold needs radiomics re-extracted under contour perturbations "
                                "(features/robustness/, written by the radiomics stage with radiomics.robustness "
                                "set); set radiomics.robustness or select.icc_threshold: null")
    if config.harmonize.combat:
        _require_centers(features, 2 * config.inner_folds)
    wanted, skipped = [], []
    for family in config.families:
        if family in TABLE_FAMILIES:
            wanted += _family_rows(family, features, config, skipped)
        else:
            wanted += _combined_rows(features, config, skipped)
    rows = []
    min_per_class = 2 * config.inner_folds
    for row in wanted:
        counts = features.labels.loc[row_patients(row, features, config.fusion.missing)].value_counts()
        if min(counts.get(0, 0), counts.get(1, 0)) < min_per_class:
            skipped.append(SkippedRow(row.family, row.method,
                                      f"fewer than {min_per_class} patients of a class ({counts.to_dict()})"))
        else:
            rows.append(row)
    return rows, skipped


def _family_rows(family: str, features: FeatureSet, config: AnalysisConfig, skipped: list) -> list[GridRow]:
    modalities = features.modalities
    available = [m for m in modalities if block_name(family, m) in features.blocks]
    rows = []
    subsets = [(m,) for m in modalities] + (fusion_subsets(modalities) if config.fusion.early else [])
    for subset in subsets:
        absent = [f"{block_name(family, m)}.csv" for m in subset if m not in available]
        method = _modality_label(subset)
        if absent:
            skipped.append(SkippedRow(family, method, f"absent table(s): {', '.join(absent)}"))
        else:
            rows.append(GridRow(family, method, SINGLE if len(subset) == 1 else EARLY,
                                tuple(block_name(family, m) for m in subset)))
    rows += _region_rows(family, features)
    rows += _late_rows(family, tuple(block_name(family, m) for m in available), config, skipped)
    return rows


def _region_rows(family: str, features: FeatureSet) -> list[GridRow]:
    """Per modality with a peritumoral block: the ring alone ("US peritumoral") and, beside the lesion's
    block, both regions' blocks in one model ("US intra+peritumoral")."""
    rows = []
    for modality in features.modalities:
        lesion = block_name(family, modality)
        for region in REGION_SUFFIXES.values():
            ring = block_name(family, modality, region)
            if ring not in features.blocks:
                continue
            label = _modality_label([modality])
            rows.append(GridRow(family, f"{label} {region}", SINGLE, (ring,)))
            if lesion in features.blocks:
                rows.append(GridRow(family, f"{label} intra+{region}", EARLY, (lesion, ring)))
    return rows


def _combined_rows(features: FeatureSet, config: AnalysisConfig, skipped: list) -> list[GridRow]:
    family = "radiomics+deep"
    blocks = tuple(name for f in TABLE_FAMILIES for m in features.modalities
                   if (name := block_name(f, m)) in features.blocks)
    families_present = {features.blocks[name].family for name in blocks}
    if families_present != set(TABLE_FAMILIES):
        absent = ", ".join(sorted(set(TABLE_FAMILIES) - families_present))
        skipped.append(SkippedRow(family, "*", f"no feature tables of family {absent}"))
        return []
    combined = [GridRow(family, RAD_DF, COMBINED, blocks)]
    if config.fusion.pca_of_all:
        combined.append(GridRow(family, PCA_OF_ALL, COMBINED, blocks))
    return combined + _late_rows(family, blocks, config, skipped)


def _late_rows(family: str, blocks: tuple[str, ...], config: AnalysisConfig, skipped: list) -> list[GridRow]:
    rows = []
    for enabled, kind, method in ((config.fusion.ensemble, ENSEMBLE, "Ensemble"),
                                  (config.fusion.stacking, STACKING, "Stacking")):
        if not enabled:
            continue
        if len(blocks) < 2:
            skipped.append(SkippedRow(family, method, f"needs >= 2 modality blocks, found {list(blocks)}"))
        else:
            rows.append(GridRow(family, method, kind, blocks))
    return rows


def row_patients(row: GridRow, features: FeatureSet, missing: str = "complete") -> pd.Index:
    """Patients a row can use: single/late fusion: any of its modalities; early/combined fusion:
    all of them (``missing="complete"``) or any of them (``missing="impute"``)."""
    presence = block_presence(features.frame, features.block_columns(row.blocks))
    needs_all = row.kind in (EARLY, COMBINED) and missing == "complete"
    keep = presence.all(axis=1) if needs_all else presence.any(axis=1)
    return features.frame.index[keep.to_numpy()]


def _icc_filtered(steps: list, columns: list[str], perturbed: dict[str, pd.DataFrame], threshold: float) -> list:
    """Radiomics steps with :class:`ICCThresholdSelector` right after the column selection, which then hands
    it a DataFrame indexed by patient id (the rows its ICC is computed on: the training fold's)."""
    named = ColumnTransformer([("features", "passthrough", columns)], remainder="drop",
                              verbose_feature_names_out=False).set_output(transform="pandas")
    judged = [column for column in columns if all(column in table.columns for table in perturbed.values())]
    patients = pd.Index(sorted(set().union(*(table.index for table in perturbed.values()))))
    values = np.stack([table.reindex(index=patients, columns=judged).to_numpy(dtype=float)
                       for table in perturbed.values()])
    return [("columns", named),
            ("icc", ICCThresholdSelector(values, patients.to_numpy(dtype=str), np.asarray(judged, dtype=str),
                                         threshold)),
            *steps[1:]]


def _require_centers(features: FeatureSet, min_patients: int) -> None:
    """Raise :class:`FeatureTableError` unless every patient has a centre (harmonize.combat's batch) and every
    centre ``min_patients`` (ComBat needs 2 of a centre in every inner training fold)."""
    if features.centers is None:
        raise FeatureTableError("harmonize.combat needs each patient's centre: add a center column to the manifest "
                                "(site or scanner) or set harmonize.combat: false")
    missing = features.centers.index[features.centers == ""]
    if len(missing):
        raise FeatureTableError(f"harmonize.combat: patient {missing[0]} has no centre; fill the manifest's center "
                                "column for every patient or set harmonize.combat: false")
    counts = features.centers.value_counts()
    if (counts < min_patients).any():
        center = counts.index[counts < min_patients][0]
        raise FeatureTableError(f"harmonize.combat: centre {center} has {counts[center]} patient(s); ComBat needs at "
                                f"least {min_patients} (2 per inner fold) to estimate a centre's scale in every "
                                "training fold: merge small centres or set harmonize.combat: false")


def _harmonizer(config: AnalysisConfig, centers: pd.Series | None) -> ComBatHarmonizer | None:
    """ComBat with each patient's centre as side data (``harmonize.combat``), else None."""
    if not config.harmonize.combat:
        return None
    return ComBatHarmonizer(centers.to_numpy(dtype=str), centers.index.to_numpy(dtype=str),
                            new_centers=config.harmonize.new_centers)


def _family_search(family: str, blocks: dict[str, list[str]], config: AnalysisConfig, method: str = RAD_DF,
                   perturbed: dict[str, pd.DataFrame] | None = None, centers: pd.Series | None = None):
    """Model search of a family's blocks; radiomics+deep: the ``method`` row's steps (Rad + DF or PCA of all);
    with ``select.icc_threshold`` radiomic features below it (ICC on ``perturbed``) are dropped first; with
    ``harmonize.combat`` every family's imputed features are ComBat-harmonised by ``centers`` next."""
    seed, select = config.seed, config.select
    harmonizer = _harmonizer(config, centers)

    def radiomics(names):
        columns = [column for name in names for column in blocks[name]]
        steps = radiomics_steps(columns, select.mannwhitney_p, select.spearman_rho, select.lasso_alphas,
                                select.fallback_k, config.inner_folds, seed)
        if select.icc_threshold is not None:
            steps = _icc_filtered(steps, columns, perturbed or {}, select.icc_threshold)
        return harmonized(steps, harmonizer)

    if family == "radiomics":
        steps = radiomics(blocks)
    elif family == "deep":
        steps = deep_steps(blocks, config.pca.deep, seed, harmonizer)
    elif method == PCA_OF_ALL:
        steps = harmonized(pca_of_all_steps([column for block in blocks.values() for column in block],
                                            config.pca.fused, seed), harmonizer)
    else:
        of_family = {f: [name for name in blocks if name.partition("_")[0] == f] for f in TABLE_FAMILIES}
        steps = rad_df_steps(radiomics(of_family["radiomics"]),
                             deep_steps({name: blocks[name] for name in of_family["deep"]}, config.pca.deep, seed,
                                        harmonizer),
                             config.pca.fused_radiomics, config.pca.fused_deep, seed)
    return model_search(steps, config.classifiers, config.inner_folds, seed, **vars(config.search))


def block_model(name: str, features: FeatureSet, config: AnalysisConfig):
    """Unfitted model search of one block: a single-modality row's model and a late-fusion base model."""
    return _family_search(features.blocks[name].family, features.block_columns([name]), config,
                          perturbed=features.perturbed, centers=features.centers)


def build_model(row: GridRow, features: FeatureSet, config: AnalysisConfig):
    """Unfitted estimator of a row: a model search (single, early, combined) or a late-fusion model."""
    blocks = features.block_columns(row.blocks)
    if row.kind in (SINGLE, EARLY, COMBINED):
        return _family_search(row.family, blocks, config, row.method, features.perturbed, features.centers)
    bases = [(name, block_model(name, features, config)) for name in blocks]
    if row.kind == ENSEMBLE:
        return AccuracyWeightedEnsemble(bases, blocks, cv=config.inner_folds, random_state=config.seed,
                                        temperature=config.fusion.temperature)
    meta = model_search([("scale", StandardScaler())], config.classifiers, config.inner_folds, config.seed,
                        **vars(config.search))
    return StackingFusion(bases, blocks, meta_estimator=meta, cv=config.inner_folds, random_state=config.seed)


def describe_classifier(model) -> str:
    """Classifier(s) a fitted row model uses: the chosen one, the ensemble's bases joined by '+',
    or the stacking meta-learner (as in the paper's tables)."""
    if isinstance(model, AccuracyWeightedEnsemble):
        return "+".join(dict.fromkeys(chosen_classifier(base) for base in model.estimators_.values()))
    if isinstance(model, StackingFusion):
        return chosen_classifier(model.meta_estimator_)
    return chosen_classifier(model)
