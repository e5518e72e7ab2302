"""Feature tables -> one patient x feature frame with a block per (family, modality).

Reads ``DIR/radiomics_<mod>.csv`` and ``DIR/deep_<mod>.csv`` (format in docs/contracts.md). Columns
are renamed ``<family>_<mod>__<feature>`` so modalities never collide; a patient without a
modality has NaN in that block. Fold tables ``DIR/deep_<mod>/<fold>.csv`` (a network fine-tuned on one
outer fold's training patients, ``split`` = that fold's train/test) replace a block's features in that
fold (:meth:`FeatureSet.in_fold`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mmdlr.evaluate import Fold

TABLE_FAMILIES = ("radiomics", "deep")
REGION_SUFFIXES = {"_peritumoral": "peritumoral"}  # radiomics_<mod>_peritumoral.csv: the ring's own block
META_COLUMNS = ("patient_id", "label", "split", "group", "center")
NON_FEATURE_COLUMNS = (*META_COLUMNS, "head_prob_malignant")


class FeatureTableError(ValueError):
    """A feature table that cannot be used (missing columns, bad labels, conflicting patients, ...)."""


@dataclass(frozen=True)
class Block:
    """One modality (and lesion region: intratumoral, peritumoral) of one feature family."""

    family: str
    modality: str
    features: tuple[str, ...]
    region: str = "intratumoral"

    @property
    def name(self) -> str:
        return block_name(self.family, self.modality, self.region)

    @property
    def columns(self) -> list[str]:
        return [f"{self.name}__{feature}" for feature in self.features]


@dataclass(frozen=True)
class FoldBlock:
    """A block's features from a network trained on one outer fold's training patients."""

    source: str
    frame: pd.DataFrame
    tested: frozenset[str]  # the fold's test patients, never seen by that network


@dataclass
class FeatureSet:
    """All feature tables of a cohort, aligned on patient_id; ``fold_blocks``: fold name -> block name ->
    that fold's features of the block (fine-tuned networks under nested CV), else empty."""

    frame: pd.DataFrame
    blocks: dict[str, Block]
    labels: pd.Series
    split: pd.Series
    groups: pd.Series
    modalities: list[str]
    absent: list[str] = field(default_factory=list)
    fold_blocks: dict[str, dict[str, FoldBlock]] = field(default_factory=dict)
    perturbed: dict[str, pd.DataFrame] = field(default_factory=dict)  # contour perturbation -> radiomics columns
    centers: pd.Series | None = None  # each patient's centre (site or scanner); None when the tables name none

    def in_fold(self, fold: Fold | None) -> "FeatureSet":
        """The set an outer fold is fitted and tested on: a block with fold tables takes the fold's features,
        from a network that never saw the fold's test patients (``fold=None``, the final fit on all
        patients: the all-patient tables). Raises :class:`FeatureTableError` if the fold has no fold tables
        or they were written for other test patients."""
        if not self.fold_blocks:
            return self
        if fold is None:
            return dataclasses.replace(self, fold_blocks={})
        if fold.name not in self.fold_blocks:
            raise FeatureTableError(f"no fold tables for outer fold {fold.name} (there are "
                                    f"{', '.join(self.fold_blocks)}): the fine-tuned deep features were made for "
                                    "another protocol or other folds; rerun the deep stage (mmdlr run) with this "
                                    "analysis config")
        values = self.frame.to_numpy(copy=True)
        for block in self.fold_blocks[fold.name].values():
            expected = frozenset(fold.test).intersection(block.frame.index)
            if block.tested != expected:
                patient = sorted(block.tested ^ expected)[0]
                raise FeatureTableError(f"{block.source}: its network's test patients are not outer fold {fold.name}'s "
                                        f"(e.g. patient {patient}); the fold tables were made for other folds: rerun "
                                        "the deep stage (mmdlr run) with this analysis config")
            columns = self.frame.columns.get_indexer(block.frame.columns)
            values[:, columns] = block.frame.reindex(self.frame.index).to_numpy()
        frame = pd.DataFrame(values, index=self.frame.index, columns=self.frame.columns)
        return dataclasses.replace(self, frame=frame, fold_blocks={})

    def block_columns(self, names: Sequence[str]) -> dict[str, list[str]]:
        """Block spec (name -> columns) of the named blocks."""
        return {name: self.blocks[name].columns for name in names}

    @property
    def has_groups(self) -> bool:
        return bool((self.groups.fillna("").astype(str) != "").any())


def block_name(family: str, modality: str, region: str = "intratumoral") -> str:
    return f"{family}_{modality}" + ("" if region == "intratumoral" else f"_{region}")


def _modality_region(stem: str) -> tuple[str, str]:
    """``us`` -> (us, intratumoral); ``us_peritumoral`` -> (us, peritumoral)."""
    for suffix, region in REGION_SUFFIXES.items():
        if stem.endswith(suffix):
            return stem.removesuffix(suffix), region
    return stem, "intratumoral"


def feature_names(table: pd.DataFrame) -> list[str]:
    """Feature columns of a feature table (everything but ids, labels, the CNN head output, diagnostics)."""
    return [c for c in table.columns if c not in NON_FEATURE_COLUMNS and not c.startswith("diagnostics_")]


def block_frame(table: pd.DataFrame, block: Block) -> pd.DataFrame:
    """The block's features of ``table`` (indexed by patient_id) under their prefixed column names."""
    indexed = table.assign(patient_id=table["patient_id"].astype(str)).set_index("patient_id")
    missing = [feature for feature in block.features if feature not in indexed.columns]
    if missing:
        raise FeatureTableError(f"{block.name}: table lacks {len(missing)} feature(s), e.g. {missing[:3]}")
    frame = indexed[list(block.features)]
    frame.columns = block.columns
    return frame


def read_perturbed(table: Path) -> dict[str, pd.DataFrame]:
    """Contour perturbation -> its re-extraction of feature table ``table`` (``<dir>/robustness/<table
    stem>/<perturbation>.csv``, see :mod:`mmdlr.radiomics.robustness`), indexed by patient id."""
    folder = table.parent / "robustness" / table.stem
    return {path.stem: pd.read_csv(path, dtype={"patient_id": str}).set_index("patient_id")
            for path in sorted(folder.glob("*.csv"))}


def read_feature_table(path: Path) -> pd.DataFrame:
    """One feature CSV with ids as strings, validated labels and numeric features."""
    table = pd.read_csv(path, dtype={"patient_id": str, "split": str, "group": str, "center": str},
                        keep_default_na=True)
    missing = [column for column in ("patient_id", "label") if column not in table.columns]
    if missing:
        raise FeatureTableError(f"{path}: missing column(s) {missing}")
    duplicated = table["patient_id"][table["patient_id"].duplicated()]
    if len(duplicated):
        raise FeatureTableError(f"{path}: duplicate patient_id {duplicated.iloc[0]}")
    if not table["label"].isin([0, 1]).all():
        raise FeatureTableError(f"{path}: label must be 0 or 1")
    for column in feature_names(table):
        try:
            table[column] = table[column].astype(float)
        except ValueError as error:
            raise FeatureTableError(f"{path}: feature column {column!r} is not numeric") from error
    table = table.copy()  # one block per dtype again after the column-wise conversion, before adding columns
    for column in ("split", "group", "center"):
        table[column] = table[column].fillna("").astype(str) if column in table.columns else ""
    return table


def load_feature_set(directory: str | Path, modalities: Sequence[str] | None = None) -> FeatureSet:
    """Read every feature table of ``directory``; ``modalities`` fixes which and in what order (default: all, sorted).

    Tables that are expected but absent are listed in ``absent``.
    """
    directory = Path(directory)
    found = {(family, *_modality_region(path.stem[len(family) + 1:])): path
             for family in TABLE_FAMILIES for path in sorted(directory.glob(f"{family}_*.csv"))}
    modalities = list(modalities) if modalities else sorted({modality for _, modality, _ in found})
    if not modalities:
        raise FileNotFoundError(f"no radiomics_<mod>.csv or deep_<mod>.csv tables in {directory}")
    blocks, frames, meta, absent, fold_blocks, perturbed = {}, [], [], [], {}, {}
    for family, modality, region in [(f, m, r) for f in TABLE_FAMILIES for m in modalities
                                     for r in ("intratumoral", *REGION_SUFFIXES.values())]:
        path = found.get((family, modality, region))
        if path is None:
            absent += [f"{family}_{modality}.csv"] if region == "intratumoral" else []
            continue
        table = read_feature_table(path)
        block = Block(family, modality, tuple(feature_names(table)), region)
        blocks[block.name] = block
        frames.append(block_frame(table, block))
        for name, values in read_perturbed(path).items():
            perturbed.setdefault(name, []).append(values.reindex(columns=list(block.features))
                                                  .set_axis(block.columns, axis=1))
        meta.append(table[list(META_COLUMNS)].assign(source=path.name))
        for fold, fold_block in _fold_blocks(directory / path.stem, table, block).items():
            fold_blocks.setdefault(fold, {})[block.name] = fold_block
    if not blocks:
        raise FileNotFoundError(f"none of the feature tables for modalities {modalities} exist in {directory}")
    labels, split, groups, centers = _patient_meta(pd.concat(meta, ignore_index=True))
    _require_groups_in_one_split(split, groups)
    frame = pd.concat(frames, axis=1).reindex(labels.index)
    # one float block: row and column selections in the folds are then a single numpy take
    frame = pd.DataFrame(frame.to_numpy(dtype=float), index=frame.index, columns=frame.columns)
    _require_same_folds(fold_blocks, directory)
    perturbed = {name: pd.concat(parts, axis=1) for name, parts in perturbed.items()}
    return FeatureSet(frame, blocks, labels, split, groups, modalities, absent, fold_blocks, perturbed=perturbed,
                      centers=centers if (centers != "").any() else None)


def _fold_blocks(folder: Path, table: pd.DataFrame, block: Block) -> dict[str, FoldBlock]:
    """Fold name -> the block's features in ``folder/<fold>.csv``, each covering the main table's patients."""
    fold_blocks = {}
    for path in sorted(folder.glob("*.csv")):
        fold_table = read_feature_table(path)
        source = f"{folder.name}/{path.name}"
        if set(fold_table["patient_id"]) != set(table["patient_id"]):
            patient = sorted(set(fold_table["patient_id"]) ^ set(table["patient_id"]))[0]
            raise FeatureTableError(f"{source}: patient {patient} is in one of {source} and {folder.name}.csv only; "
                                    "rerun the deep stage")
        tested = frozenset(fold_table.loc[fold_table["split"].str.lower() == "test", "patient_id"])
        fold_blocks[path.stem] = FoldBlock(source, block_frame(fold_table, block), tested)
    return fold_blocks


def _require_same_folds(fold_blocks: dict[str, dict[str, FoldBlock]], directory: Path) -> None:
    """Every block with fold tables has one for every fold."""
    with_folds = sorted({name for per_block in fold_blocks.values() for name in per_block})
    for fold, per_block in fold_blocks.items():
        missing = [name for name in with_folds if name not in per_block]
        if missing:
            raise FeatureTableError(f"{directory}: {missing[0]}/{fold}.csv is missing while other blocks have "
                                    f"fold {fold}; rerun the deep stage")


def _patient_meta(meta: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series, pd.Series]:
    """Label, split, group and centre per patient; tables must agree on each."""
    for column in ("label", "split", "group", "center"):
        values = meta[meta[column].astype(str) != ""] if column != "label" else meta
        conflicting = values.groupby("patient_id")[column].nunique()
        if (conflicting > 1).any():
            patient = conflicting.index[conflicting > 1][0]
            sources = ", ".join(values.loc[values["patient_id"] == patient, "source"])
            raise FeatureTableError(f"patient {patient}: {column} differs between {sources}")
    first = meta.sort_values("patient_id", kind="stable").groupby("patient_id", sort=True)
    labels = first["label"].first().astype(int)
    split = first["split"].agg(lambda values: next((v for v in values if v), ""))
    groups = first["group"].agg(lambda values: next((v for v in values if v), ""))
    centers = first["center"].agg(lambda values: next((v for v in values if v), ""))
    return labels, split, groups, centers


def _require_groups_in_one_split(split: pd.Series, groups: pd.Series) -> None:
    """Raise :class:`FeatureTableError` naming the first group whose patients the split puts in train and test."""
    assigned = pd.DataFrame({"split": split.str.strip().str.lower(), "group": groups})
    assigned = assigned[(assigned["split"] != "") & (assigned["group"] != "")]
    for group, members in assigned.groupby("group", sort=True):
        if members["split"].nunique() > 1:
            sides = "; ".join(f"{', '.join(members.index[members['split'] == side])} in {side}"
                              for side in sorted(set(members["split"]), key=lambda side: (side != "train", side)))
            raise FeatureTableError(f"group {group} is split apart ({sides}): give all patients of a group "
                                    "the same split")


def assemble_features(tables: Mapping[str, pd.DataFrame], blocks: Mapping[str, Block]) -> pd.DataFrame:
    """Frame with every block's prefixed columns from per-block tables (NaN for a block not given)."""
    frames = [block_frame(tables[name], block) if name in tables else pd.DataFrame(columns=block.columns)
              for name, block in blocks.items()]
    return pd.concat(frames, axis=1).astype(float)
