"""A fitted row model saved with everything needed to serve it, as a skops file: data that loads without
running code (no pickle), and only when it holds nothing but the types mmdlr's models are made of.

skops is imported when a file is written or read, not with this module: importing it walks every scikit-learn
module (3 CPU s), which each worker process of the analysis grid would otherwise pay without saving anything.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from zipfile import ZIP_DEFLATED, ZipFile

import numpy as np
import pandas as pd

from mmdlr.analysis.features import Block, assemble_features
from mmdlr.atomic import write_bytes
from mmdlr.fuse import block_presence

MODEL_SUFFIX = ".skops"
RERUN_ANALYSIS = "re-run the analysis stage (`mmdlr run ... --force analysis`)"


class ModelFileError(ValueError):
    """A model file mmdlr refuses to load: not a skops file, a pickle of an older mmdlr, or foreign types."""


@dataclass
class ModelBundle:
    """Fitted model + the exact feature columns (and their source tables) it expects.

    ``blocks`` maps block name (``<family>_<modality>``) to the table it is read from and the feature
    names in that table; ``feature_columns`` are the prefixed columns of the model's input frame.
    ``requires_all_blocks``: the model was trained on complete patients only (single modality, early
    fusion), so a patient lacking one of its modalities is refused rather than silently imputed.
    """

    model: object
    family: str
    method: str
    classifier: str
    threshold: float
    blocks: dict[str, Block]
    trained_on: str
    requires_all_blocks: bool = True

    @property
    def feature_columns(self) -> list[str]:
        return [column for block in self.blocks.values() for column in block.columns]

    def features_from_tables(self, tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
        """Model input from per-block feature tables (``{"radiomics_us": table, ...}``, tables as in
        docs/contracts.md); a block not given counts as a missing modality."""
        return assemble_features(tables, self.blocks)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Malignancy probability per row of ``features`` (prefixed columns; extra columns are ignored)."""
        missing = [column for column in self.feature_columns if column not in features.columns]
        if missing:
            raise ValueError(f"{self.method}: input lacks {len(missing)} feature column(s), e.g. {missing[:3]}")
        if self.requires_all_blocks:
            presence = block_presence(features, {name: block.columns for name, block in self.blocks.items()})
            incomplete = presence.index[~presence.all(axis=1)]
            if len(incomplete):
                raise ValueError(f"{self.family} / {self.method} needs every modality of {list(self.blocks)}; "
                                 f"missing for {list(incomplete[:3])}")
        return self.model.predict_proba(features[self.feature_columns])[:, 1]

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """1 (malignant) where the probability reaches the bundle's threshold."""
        return (self.predict_proba(features) >= self.threshold).astype(int)


@dataclass
class PandasData:
    """A fitted pandas attribute (a late-fusion model's weights or meta-features) as arrays: skops stores
    no pandas objects. ``columns`` is None for a Series."""

    values: np.ndarray
    index: np.ndarray
    index_dtype: str
    index_name: object
    columns: list | None
    name: object

    @classmethod
    def of(cls, value: pd.Series | pd.DataFrame) -> PandasData:
        columns = list(value.columns) if isinstance(value, pd.DataFrame) else None
        return cls(value.to_numpy(), value.index.to_numpy(), str(value.index.dtype), value.index.name, columns,
                   getattr(value, "name", None))

    def restore(self) -> pd.Series | pd.DataFrame:
        index = pd.Index(self.index, dtype=self.index_dtype, name=self.index_name)
        if self.columns is None:
            return pd.Series(self.values, index=index, name=self.name)
        return pd.DataFrame(self.values, index=index, columns=self.columns)


@dataclass
class Strings:
    """A long list or object array of strings (a step's ``feature_names_in_``, a column transformer's columns) as
    a fixed-width unicode array: skops saves that as one ``.npy`` file instead of one JSON node per name, which
    made up 90% of a model file's nodes. ``kind`` is ``list`` or ``array``."""

    values: np.ndarray
    kind: str

    MIN_LENGTH = 32  # shorter ones are cheaper as JSON than as a file of their own

    @classmethod
    def of(cls, value) -> Strings | None:
        """``value`` as :class:`Strings`, or None if it is none of these or would not round-trip exactly."""
        if isinstance(value, list):
            kind, items = "list", value
        elif type(value) is np.ndarray and value.dtype == object and value.ndim == 1:
            kind, items = "array", value.tolist()
        else:
            return None
        if len(items) < cls.MIN_LENGTH or not all(type(item) is str for item in items):
            return None
        stored = cls(np.array(items, dtype=str), kind)
        return stored if stored.values.tolist() == items else None  # a trailing NUL would be lost

    def restore(self) -> list | np.ndarray:
        items = self.values.tolist()
        return items if self.kind == "list" else np.array(items, dtype=object)


# What a model file may hold besides the types skops trusts by itself (scikit-learn's estimators, builtin
# containers, numpy arrays, scipy sparse matrices): exactly the types mmdlr's models are made of. Names, not
# prefixes: skops calls some loaded types with arguments from the file, so every callable here must be harmless.
TRUSTED_TYPES = frozenset({
    # the bundle, and what it saves pandas attributes (late fusion's) and long lists of names as
    "mmdlr.analysis.bundle.ModelBundle",
    "mmdlr.analysis.bundle.PandasData",
    "mmdlr.analysis.bundle.Strings",
    "mmdlr.analysis.features.Block",
    # the model search, its pipeline, cache and folds
    "mmdlr.classify.search.PreprocessOnceSearchCV",
    "mmdlr.classify.search.GroupsPipeline",
    "mmdlr.classify.cache.FitCache",
    "mmdlr.evaluate.splits.StratifiedFoldsWithGroups",
    # our selectors
    "mmdlr.select.impute.FiniteMedianImputer",
    "mmdlr.select.mann_whitney.MannWhitneyFilter",
    "mmdlr.select.spearman.SpearmanRedundancyFilter",
    "mmdlr.select.lasso.LassoSelector",
    "mmdlr.select.pca.ClippedPCA",
    "mmdlr.select.icc.ICCThresholdSelector",
    "mmdlr.select.harmonize.ComBatHarmonizer",
    # late fusion
    "mmdlr.fuse.ensemble.AccuracyWeightedEnsemble",
    "mmdlr.fuse.stacking.StackingFusion",
    "numpy.dtype",
    # a search's scorer; and scikit-learn's roc_auc and accuracy scorers, which runs saved before it hold
    "mmdlr.classify.search.auc_and_accuracy",
    "sklearn.metrics._scorer._Scorer",
    "sklearn.metrics._ranking.roc_auc_score",
    "sklearn.metrics._classification.accuracy_score",
    # SVM: an SVC with Platt-scaled probabilities (CalibratedClassifierCV, method="sigmoid")
    "mmdlr.classify.zoo.PlattScaledSVC",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    # KNN's neighbour search trees
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    # RF and ExtraTrees: scikit-learn's tree structure (node arrays)
    "sklearn.tree._tree.Tree",
    # XGBoost and LightGBM: the booster holds the library's own model format (XGBoost's binary model
    # buffer, LightGBM's model text), which the library parses on load
    "xgboost.sklearn.XGBClassifier",
    "xgboost.core.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.basic.Booster",
    "collections.OrderedDict",
})
# Trusted by module prefix: scikit-learn's distance metrics (``EuclideanDistance64``, ``ManhattanDistance64``,
# ...), one class per metric a KNN grid may choose; they hold only the metric's parameters.
TRUSTED_PREFIXES = ("sklearn.metrics._dist_metrics.",)


def _foreign(type_names: Iterable[str]) -> list[str]:
    """The types of ``type_names`` that neither :data:`TRUSTED_TYPES` nor :data:`TRUSTED_PREFIXES` admit."""
    return [name for name in type_names if name not in TRUSTED_TYPES and not name.startswith(TRUSTED_PREFIXES)]


def _describe(types: list[str]) -> str:
    return ", ".join(types[:3]) + (f" and {len(types) - 3} more" if len(types) > 3 else "")


def _to_storable(value):
    """What ``value`` is saved as (:class:`PandasData`, :class:`Strings`), or None to save it as it is."""
    if isinstance(value, (pd.Series, pd.DataFrame)):
        return PandasData.of(value)
    return Strings.of(value)


def _from_storable(value):
    return value.restore() if isinstance(value, (PandasData, Strings)) else None


def _replaced(node, convert, undo: list, seen: set):
    """``node``, or what ``convert`` replaces it with; inside it (attributes, dict values, list and tuple items,
    recursively) every value ``convert`` replaces is replaced in place, and (container, key, old value) appended to
    ``undo``. A tuple holding a replaced value is itself replaced by a new tuple."""
    new = convert(node)
    if new is not None:
        return new
    if id(node) in seen:
        return node
    seen.add(id(node))
    if type(node) is tuple:
        items = tuple(_replaced(item, convert, undo, seen) for item in node)
        return node if all(a is b for a, b in zip(items, node)) else items
    if isinstance(node, (dict, list)):
        container = node
    elif hasattr(node, "__dict__") and not isinstance(node, type):
        container = vars(node)
    else:
        return node
    for key in range(len(node)) if isinstance(node, list) else list(container):
        old = container[key]
        new = _replaced(old, convert, undo, seen)
        if new is not old:
            container[key] = new
            undo.append((container, key, old))
    return node


def _skops_bytes(obj) -> bytes:
    """``skops.io.dumps(obj, compression=ZIP_DEFLATED)`` with the schema written by json's C encoder. skops indents
    it (``json.dumps(state, indent=2)``), which runs the pure-Python encoder: 60% of the time to save a run's
    models (21 files of a 3-modality run: 46.6 -> 18.1 CPU s). The file is the same to ``skops.io.load``. This is
    ``skops.io._persist._save`` of skops 0.16, pinned below 0.17 in pyproject.toml; the round-trip tests read
    every classifier's file back."""
    import skops
    from skops.io._utils import SaveContext, get_state

    buffer = io.BytesIO()
    with ZipFile(buffer, "w", compression=ZIP_DEFLATED) as zip_file:  # the JSON tree shrinks ~15x
        context = SaveContext(zip_file=zip_file)
        state = get_state(obj, context)
        context.clear_memo()
        state["protocol"] = context.protocol
        state["_skops_version"] = skops.__version__
        zip_file.writestr("schema.json", json.dumps(state))
    return buffer.getvalue()


def model_file_bytes(bundle: ModelBundle) -> bytes:
    """The bundle as the bytes of a compressed skops file; a model holding a type :func:`load_bundle` would refuse
    raises :class:`ModelFileError`."""
    import skops.io as sio

    undo = []
    model = _replaced(bundle.model, _to_storable, undo, set())
    try:
        data = _skops_bytes(dataclasses.replace(bundle, model=model))
    finally:
        for container, key, value in reversed(undo):
            container[key] = value
    foreign = _foreign(sio.get_untrusted_types(data=data))
    if foreign:
        raise ModelFileError(f"{bundle.family} / {bundle.method}: the model holds types mmdlr does not load "
                             f"({_describe(foreign)}); add them to TRUSTED_TYPES in mmdlr/analysis/bundle.py if safe")
    return data


def save_bundle(bundle: ModelBundle, path: str | Path) -> Path:
    """Write the bundle as a compressed skops file (atomically). A model holding a type :func:`load_bundle`
    would refuse is not written."""
    return write_bytes(model_file_bytes(bundle), path)


def load_bundle(path: str | Path) -> ModelBundle:
    """Read a bundle written by :func:`save_bundle`; nothing in the file runs. A file that is no skops file,
    or holds any type outside :data:`TRUSTED_TYPES` / :data:`TRUSTED_PREFIXES`, is refused (ModelFileError)."""
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    path = Path(path)
    if path.suffix == ".joblib":
        raise ModelFileError(f"{path} is a joblib pickle of an older mmdlr, which is no longer loaded (pickle can "
                             f"run code); {RERUN_ANALYSIS} to save the models as {MODEL_SUFFIX} files")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {RERUN_ANALYSIS}")
    try:  # skops audits every type against the trusted names before it constructs anything
        bundle = sio.load(path, trusted=sorted(TRUSTED_TYPES))
    except UntrustedTypesFoundException:  # a prefix-trusted type (a KNN metric) or a foreign one
        bundle = _load_reviewed(path)
    except Exception as error:  # a damaged or hostile file can fail skops' parser anywhere
        raise _unreadable(path, error) from None
    if not isinstance(bundle, ModelBundle):
        raise ModelFileError(f"{path} holds a {type(bundle).__name__}, not a model; only load run folders made "
                             f"by mmdlr")
    try:  # a hostile file's PandasData or Strings may hold anything
        return dataclasses.replace(bundle, model=_replaced(bundle.model, _from_storable, [], set()))
    except Exception as error:
        raise _unreadable(path, error) from None


def _load_reviewed(path: Path) -> object:
    """Load ``path`` after listing its untrusted types and refusing any that :func:`_foreign` names."""
    import skops.io as sio

    try:
        found = sio.get_untrusted_types(file=path)
    except Exception as error:
        raise _unreadable(path, error) from None
    foreign = _foreign(found)
    if foreign:
        raise ModelFileError(f"{path} holds types mmdlr does not load: {_describe(foreign)}; only load run "
                             f"folders made by mmdlr")
    try:
        return sio.load(path, trusted=found)
    except Exception as error:
        raise _unreadable(path, error) from None


def _unreadable(path: Path, error: Exception) -> ModelFileError:
    return ModelFileError(f"{path} is not a model file mmdlr saved ({type(error).__name__}: {error}); only load "
                          f"run folders made by mmdlr")
