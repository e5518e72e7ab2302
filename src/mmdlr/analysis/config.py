"""Analysis configuration: YAML -> validated dataclasses (unknown keys are errors)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mmdlr.classify.zoo import CLASSIFIERS, DEFAULT_GRIDS, make_classifier
from mmdlr.io.manifest import modality_name_problem
from mmdlr.select.harmonize import NEW_CENTERS

FAMILIES = ("radiomics", "deep", "radiomics+deep")
PROTOCOLS = ("holdout", "nested_cv", "leave_center_out")
BACKENDS = ("loky", "threading", "dask")
PIPELINE_SECTIONS = ("io", "roi", "radiomics", "deep", "report")  # read by `mmdlr run`, ignored here


class ConfigError(ValueError):
    """An analysis configuration with an unknown key or an invalid value."""


@dataclass
class HoldoutConfig:
    test_size: float = 0.2

    def __post_init__(self):
        _require(0 < self.test_size < 1, f"holdout.test_size must be in (0, 1), got {self.test_size}")


@dataclass
class NestedCVConfig:
    outer_folds: int = 5
    repeats: int = 3

    def __post_init__(self):
        _require(self.outer_folds >= 2 and self.repeats >= 1, "nested_cv needs outer_folds >= 2 and repeats >= 1")


@dataclass
class SelectConfig:
    mannwhitney_p: float = 0.05
    spearman_rho: float = 0.9
    lasso_alphas: int = 10
    fallback_k: int = 10
    icc_threshold: float | None = None  # drop radiomic features with ICC(3,1) under contour perturbations below it

    def __post_init__(self):
        _require(0 < self.mannwhitney_p <= 1, "select.mannwhitney_p must be in (0, 1]")
        _require(self.icc_threshold is None or (_is_number(self.icc_threshold) and -1 <= self.icc_threshold <= 1),
                 f"select.icc_threshold must be null or an ICC in [-1, 1] (e.g. 0.75), got {self.icc_threshold!r}")
        _require(0 < self.spearman_rho <= 1, "select.spearman_rho must be in (0, 1]")
        _require(self.lasso_alphas >= 1 and self.fallback_k >= 1,
                 "select.lasso_alphas and select.fallback_k must be >= 1")


@dataclass
class PCAConfig:
    """Components: ``deep`` per modality; ``fused_radiomics`` + ``fused_deep`` for the Rad + DF row
    (57 + 51 = 108, section 3.4); ``fused`` for the optional "PCA of all features" row."""

    deep: int = 32
    fused_radiomics: int = 57
    fused_deep: int = 51
    fused: int = 108

    def __post_init__(self):
        for name in ("deep", "fused_radiomics", "fused_deep", "fused"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value >= 1, f"pca.{name} must be an integer >= 1, got {value!r}")


@dataclass
class SearchConfig:
    """Inner-CV model choice: tree ensembles are screened with ``screen_share`` of their trees and the
    ``screen_keep`` best within ``screen_margin`` (AUC) of the best first-round score are scored in full; SVMs are
    scored uncalibrated (same AUC). ``screen_margin: null`` scores every candidate in full
    (:class:`~mmdlr.classify.search.PreprocessOnceSearchCV`)."""

    screen_margin: float | None = 0.02
    screen_share: float = 0.125
    screen_keep: int = 3

    def __post_init__(self):
        _require(self.screen_margin is None or (_is_number(self.screen_margin) and 0 <= self.screen_margin <= 1),
                 f"search.screen_margin must be null or an AUC difference in [0, 1], got {self.screen_margin!r}")
        _require(_is_number(self.screen_share) and 0 < self.screen_share <= 1,
                 f"search.screen_share must be in (0, 1], got {self.screen_share!r}")
        _require(isinstance(self.screen_keep, int) and not isinstance(self.screen_keep, bool) and self.screen_keep >= 1,
                 f"search.screen_keep must be an integer >= 1, got {self.screen_keep!r}")


@dataclass
class FusionConfig:
    early: bool = True
    ensemble: bool = True
    stacking: bool = True
    pca_of_all: bool = False
    missing: str = "complete"
    temperature: float = 1.0

    def __post_init__(self):
        _require(self.missing in ("complete", "impute"),
                 f"fusion.missing must be 'complete' or 'impute', got {self.missing!r}")
        _require(_is_number(self.temperature) and self.temperature > 0,
                 f"fusion.temperature must be a number > 0, got {self.temperature!r}")


@dataclass
class BootstrapConfig:
    n: int = 2000
    seed: int = 42

    def __post_init__(self):
        _require(self.n >= 100, f"bootstrap.n must be >= 100, got {self.n}")


@dataclass
class HarmonizeConfig:
    """ComBat with the manifest's centre as batch, fitted in every training fold (docs/analysis.md)."""

    combat: bool = False
    new_centers: str = "estimate"  # a test centre not seen in training: estimate its effects, or refuse

    def __post_init__(self):
        _require(isinstance(self.combat, bool), f"harmonize.combat must be true or false, got {self.combat!r}")
        _require(self.new_centers in NEW_CENTERS,
                 f"harmonize.new_centers must be one of {', '.join(NEW_CENTERS)}, got {self.new_centers!r}")


@dataclass
class ParallelConfig:
    backend: str = "loky"
    n_jobs: int = 2
    scheduler_address: str | None = None

    def __post_init__(self):
        _require(self.backend in BACKENDS, f"parallel.backend must be one of {BACKENDS}, got {self.backend!r}")
        _require(self.n_jobs == -1 or self.n_jobs >= 1, "parallel.n_jobs must be >= 1 or -1")


@dataclass
class AnalysisConfig:
    """Every setting of ``mmdlr analyze``; see ``configs/paper.yaml`` for the documented defaults."""

    protocol: str = "holdout"
    seed: int = 42
    holdout: HoldoutConfig = field(default_factory=HoldoutConfig)
    nested_cv: NestedCVConfig = field(default_factory=NestedCVConfig)
    inner_folds: int = 3
    modalities: list[str] | None = None
    families: list[str] = field(default_factory=lambda: list(FAMILIES))
    select: SelectConfig = field(default_factory=SelectConfig)
    pca: PCAConfig = field(default_factory=PCAConfig)
    classifiers: dict[str, dict[str, list]] = field(default_factory=lambda: dict(DEFAULT_GRIDS))
    search: SearchConfig = field(default_factory=SearchConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    threshold: float | str = 0.5
    comparisons: list[list[str]] = field(default_factory=list)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    save_models: bool = True
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    harmonize: HarmonizeConfig = field(default_factory=HarmonizeConfig)

    def __post_init__(self):
        _require(self.protocol in PROTOCOLS, f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        _require(not (self.protocol == "leave_center_out" and self.harmonize.combat
                      and self.harmonize.new_centers == "refuse"),
                 "harmonize.new_centers: refuse cannot run protocol leave_center_out (its test centre is never in "
                 "training); use new_centers: estimate or harmonize.combat: false")
        _require(self.inner_folds >= 2, "inner_folds must be >= 2")
        for modality in self.modalities or ():
            problem = modality_name_problem(str(modality))
            _require(problem is None, f"modalities: {problem}")
        unknown = sorted(set(self.families) - set(FAMILIES))
        _require(not unknown and self.families, f"families must be a non-empty subset of {FAMILIES}; unknown {unknown}")
        _require(self.threshold == "youden" or (not isinstance(self.threshold, str) and 0 < self.threshold < 1),
                 f"threshold must be a probability in (0, 1) or 'youden', got {self.threshold!r}")
        self.classifiers = _classifier_grids(self.classifiers)
        self.comparisons = _comparisons(self.comparisons)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _comparisons(comparisons) -> list[list[str]]:
    """Pre-specified comparisons: pairs of ``family/method`` names as the result tables print them."""
    _require(isinstance(comparisons, (list, tuple)), "comparisons must be a list of [model_a, model_b] pairs")
    pairs = []
    for pair in comparisons:
        _require(isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(m, str) for m in pair),
                 f"comparisons: {pair!r} must be a pair [family/method, family/method], e.g. "
                 "[radiomics+deep/Stacking, radiomics/US]")
        for model in pair:
            family = model.split("/", 1)[0]
            _require("/" in model and family in FAMILIES,
                     f"comparisons: {model!r} must be family/method with family one of {', '.join(FAMILIES)}")
        pairs.append(list(pair))
    return pairs


def _classifier_grids(classifiers) -> dict[str, dict[str, list]]:
    """A list of names gets the default grids; a mapping gives each name its own grid ({} = no tuning)."""
    if isinstance(classifiers, (list, tuple)):
        classifiers = {name: DEFAULT_GRIDS.get(name, {}) for name in classifiers}
    _require(isinstance(classifiers, dict) and classifiers, "classifiers must be a non-empty list or mapping")
    grids = {}
    for name, grid in classifiers.items():
        _require(name in CLASSIFIERS, f"unknown classifier {name!r}; choose from {CLASSIFIERS}")
        grid = dict(grid or {})
        unknown = sorted(set(grid) - set(make_classifier(name).get_params()))
        _require(not unknown, f"classifiers.{name}: unknown hyper-parameter(s) {unknown}")
        grids[name] = {key: list(values) if isinstance(values, (list, tuple)) else [values]
                       for key, values in grid.items()}
    return grids


def _build(cls, values: dict, path: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must be a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) in {path}: {', '.join(unknown)}; known: {', '.join(known)}")
    kwargs = {}
    for name, value in values.items():
        default = known[name].default_factory() if known[name].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            value = _build(type(default), value or {}, f"{path}.{name}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ConfigError(f"{path}: {error}") from error


def config_from_dict(values: dict | None) -> AnalysisConfig:
    """Validated :class:`AnalysisConfig` from a plain mapping (missing keys take their defaults)."""
    return _build(AnalysisConfig, values or {}, "config")


def load_config(path: str | Path) -> AnalysisConfig:
    """Read a YAML run config with ``yaml.safe_load`` and validate its analysis settings (the pipeline
    sections, which only `mmdlr run` reads, are left aside)."""
    with open(path, encoding="utf-8") as handle:
        values = yaml.safe_load(handle) or {}
    return config_from_dict({key: value for key, value in values.items() if key not in PIPELINE_SECTIONS})
