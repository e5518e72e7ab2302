"""The run configuration: pipeline sections (roi, radiomics, deep, report) beside the analysis settings.

One YAML file (``configs/paper.yaml``, ``configs/nested_cv.yaml``) holds both; ``mmdlr analyze`` reads
the analysis part, ``mmdlr run`` all of it. Any value can be overridden as ``section.key=value``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mmdlr.analysis.config import PIPELINE_SECTIONS, AnalysisConfig, ConfigError, config_from_dict
from mmdlr.deep.backbones import BACKBONES
from mmdlr.deep.features import PRECISIONS
from mmdlr.io.limits import CLI_MAX_DECODED_MB
from mmdlr.pipeline.bundle import refuse_parsed_strings
from mmdlr.roi.cache import RoiSettings
from mmdlr.roi.regions import REGION_CHOICES, parse_perturbation

# Settings with a fixed set of values, checked when a config is loaded (file, --set or provenance.json).
CHOICES = {"radiomics.dimension": ("2d", "3d"), "deep.backbone": tuple(BACKBONES),
           "deep.mode": ("frozen", "finetune"), "deep.precision": PRECISIONS,
           "roi.margin_unit": ("pixel", "percent"), "report.unit": ("patient", "image"),
           "roi.regions": REGION_CHOICES}


@dataclass
class IoSection:
    """Reading untrusted files: an image whose header declares more decoded MB than this is refused."""

    max_decoded_mb: float = CLI_MAX_DECODED_MB


@dataclass
class RadiomicsSection:
    """PyRadiomics: 2D on the ROI slice or 3D for volumes; params files default to configs/; ``robustness``:
    contour perturbations (``erode_1px``, ``dilate_0.5mm``, ``jitter_1px``) to re-extract every region under."""

    dimension: str = "2d"
    params_2d: str | None = None
    params_3d: str | None = None
    n_jobs: int = 2
    robustness: list[str] = field(default_factory=list)


@dataclass
class DeepSection:
    """The bundle's training and inference (paper Step 1: frozen ImageNet backbone, new 2-class head)."""

    enabled: bool = True
    backbone: str = "resnet50"
    weights: str = "imagenet"
    mode: str = "frozen"
    max_epochs: int = 200
    batch_size: int = 32
    precision: str = "float32"
    learning_rate: float = 0.001
    spatial_size: list[int] | None = None  # None: each network's own input size (224, Inception-v3 299)
    seed: int = 0
    baselines: list[str] = field(default_factory=lambda: ["resnet101", "densenet121"])
    baseline_weights: str = "imagenet"


@dataclass
class ReportSection:
    """How many correct and wrong test cases per modality get Grad-CAM overlays in the report; where the
    labels come from (the methods text says "from <label_source>") and what one manifest row is
    (``patient``, or ``image`` for image-level data such as BUSI)."""

    gradcam_cases: int = 2
    label_source: str = "histopathology"
    unit: str = "patient"


@dataclass
class RunConfig:
    """Everything `mmdlr run` needs; ``analysis`` is validated by the analysis stage's own loader."""

    io: IoSection = field(default_factory=IoSection)
    roi: RoiSettings = field(default_factory=RoiSettings)
    radiomics: RadiomicsSection = field(default_factory=RadiomicsSection)
    deep: DeepSection = field(default_factory=DeepSection)
    report: ReportSection = field(default_factory=ReportSection)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    raw: dict = field(default_factory=dict)

    def section(self, name: str) -> dict:
        """A section as a plain dict (for stage keys and provenance)."""
        return dataclasses.asdict(getattr(self, name)) if name != "analysis" else self.analysis.to_dict()


def _section(cls, values: dict | None, name: str):
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) in {name}: {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    for key, value in values.items():
        _check_type(f"{name}.{key}", value, fields[key])
    return cls(**values)


TYPES = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,), "list": (list,)}


def _check_type(name: str, value, field_: dataclasses.Field) -> None:
    """A value of its field's annotated type (a float field takes an int; ``X | None`` takes None)."""
    annotation = field_.type if isinstance(field_.type, str) else getattr(field_.type, "__name__", str(field_.type))
    if value is None and "None" in annotation:
        return
    expected = TYPES[annotation.split("|")[0].split("[")[0].strip()]
    if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
        raise ConfigError(f"{name} must be {' or '.join(t.__name__ for t in expected)}, not {value!r}")


def _check_spatial_size(deep: DeepSection) -> None:
    """``deep.spatial_size`` is null or [height, width] no smaller than any of its networks accepts."""
    size = deep.spatial_size
    if size is None:
        return
    if len(size) != 2 or not all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in size):
        raise ConfigError(f"deep.spatial_size must be [height, width] in pixels, or null for each network's own "
                          f"input size; not {size!r}")
    too_small = [f"{name} ({BACKBONES[name].min_size})" for name in dict.fromkeys([deep.backbone, *deep.baselines])
                 if min(size) < BACKBONES[name].min_size]
    if too_small:
        raise ConfigError(f"deep.spatial_size {size} is smaller than the smallest input side of {', '.join(too_small)}: "
                          "make it at least that, or null for each network's own input size")


def parse_override(text: str) -> tuple[list[str], object]:
    """``deep.max_epochs=2`` -> (["deep", "max_epochs"], 2); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, value = text.split("=", 1)
    try:
        return key.strip().split("."), yaml.safe_load(value)
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({error.problem}); quote it") from None


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """A copy of ``values`` with every ``section.key=value`` override applied."""
    values = yaml.safe_load(yaml.safe_dump(values)) or {}
    for text in overrides:
        path, value = parse_override(text)
        target = values
        for part in path[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
        target[path[-1]] = value
    return values


def load_run_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read a run config (YAML), apply ``section.key=value`` overrides, validate every section."""
    values = {}
    if path is not None:
        with open(path, encoding="utf-8") as handle:
            values = yaml.safe_load(handle) or {}
    return run_config_from_dict(apply_overrides(values, list(overrides)))


def run_config_from_dict(values: dict) -> RunConfig:
    """Validate a run config given as a mapping: the analysis keys at top level (as in the YAML files)
    or under ``analysis`` (as ``RunConfig.raw`` and provenance.json record them)."""
    refuse_parsed_strings(values, "config")
    values = dict(values)
    values.update(values.pop("analysis", None) or {})
    pipeline = {name: values.pop(name, None) for name in PIPELINE_SECTIONS}
    config = RunConfig(
        io=_section(IoSection, pipeline["io"], "io"),
        roi=_section(RoiSettings, pipeline["roi"], "roi"),
        radiomics=_section(RadiomicsSection, pipeline["radiomics"], "radiomics"),
        deep=_section(DeepSection, pipeline["deep"], "deep"),
        report=_section(ReportSection, pipeline["report"], "report"),
        analysis=config_from_dict(values),
    )
    for name, allowed in CHOICES.items():
        section, key = name.split(".")
        value = getattr(getattr(config, section), key)
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    if not config.report.label_source.strip():
        raise ConfigError("report.label_source must name where the labels come from, e.g. histopathology")
    if not config.roi.peritumoral_mm > 0:
        raise ConfigError(f"roi.peritumoral_mm must be a ring width > 0 mm, not {config.roi.peritumoral_mm!r}")
    for perturbation in config.radiomics.robustness:
        try:
            parse_perturbation(str(perturbation))
        except ValueError as error:
            raise ConfigError(f"radiomics.robustness: {error}") from None
    if not config.io.max_decoded_mb > 0:
        raise ConfigError(f"io.max_decoded_mb must be a positive number of MB, not {config.io.max_decoded_mb!r}")
    unknown = [name for name in config.deep.baselines if name not in BACKBONES]
    if unknown:
        raise ConfigError(f"deep.baselines: unknown backbone(s) {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(BACKBONES)}")
    _check_spatial_size(config.deep)
    config.raw = {name: config.section(name) for name in (*PIPELINE_SECTIONS, "analysis")}
    return config
