"""IBSI 1 compliance of mmdlr's PyRadiomics features, measured on the IBSI digital phantom, and the extraction
settings of a params file in IBSI terms (for the report).

The phantom and its consensus reference values are IBSI 1's (Zwanenburg et al., Radiology 2020; reference manual
arXiv:1612.07003). ``ibsi_map.csv`` names the PyRadiomics feature of each IBSI feature (where one exists), a
conversion where IBSI defines the quantity differently, whether the value is expected to match and why not.
Texture features are computed for every aggregation PyRadiomics can reach: 3D and 2.5D (``force2D`` on the whole
volume), 2D (``force2D`` slice by slice, averaged over slices), each with the direction matrices averaged
(PyRadiomics' default) or merged (``weightingNorm: no_weighting``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from mmdlr.io.readers import read_image
from mmdlr.paths import CONFIG_DIR

MAP_FILE = Path(__file__).with_name("ibsi_map.csv")
PRESETS = {"3d": CONFIG_DIR / "radiomics_ibsi.yaml", "2d": CONFIG_DIR / "radiomics_ibsi_2d.yaml"}
PHANTOM_FILES = {"image": "phantom.nii.gz", "mask": "mask.nii.gz",
                 "reference": "ibsi_1_reference_values_digital_phantom.csv"}
WHOLE_ROI = ("morph_", "loc_", "stat_", "ih_", "ivh_")  # IBSI computes these once on the 3D ROI
PER_DIRECTION = ("cm_", "rlm_")  # one matrix per direction: features averaged (_avg) or matrices merged (_comb)
CONVERSIONS = {"excess_kurtosis": lambda kurtosis: kurtosis - 3.0}  # IBSI's kurtosis is the excess kurtosis
SIGNIFICANT_DIGITS = 3  # IBSI reports its reference values to 3 significant digits
MERGED = {"weightingNorm": "no_weighting"}  # PyRadiomics sums the direction matrices before computing features
# What IBSI prescribes for the digital phantom, in place of the params' own: no resampling, no re-segmentation, no
# normalisation, fixed bin size 1 on its integer grey levels.
PHANTOM_SETTINGS = {"resampledPixelSpacing": None, "resegmentRange": None, "normalize": False, "binCount": None,
                    "binWidth": 1}


@dataclass(frozen=True)
class Aggregation:
    """An IBSI texture aggregation PyRadiomics can compute: the tag's suffix, the preset and how it is run."""

    suffix: str
    preset: str
    per_slice: bool


AGGREGATIONS = (Aggregation("3D", "3d", False), Aggregation("2_5D", "2d", False), Aggregation("2D", "2d", True))
AGGREGATION_SUFFIX = r"_(2D|2_5D|3D)(_avg|_comb)?$"  # of IBSI tags: cm_joint_max_2_5D_avg -> cm_joint_max


def ibsi_features(tags: pd.Series) -> pd.Series:
    """The IBSI feature of each tag, without its aggregation (the key of ``ibsi_map.csv``)."""
    return tags.str.replace(AGGREGATION_SUFFIX, "", regex=True)


def read_map(path: str | os.PathLike = MAP_FILE) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def read_reference(data_dir: str | os.PathLike) -> pd.DataFrame:
    """IBSI's reference table: tag, family, feature, reference, tolerance (NaN where IBSI gives none)."""
    path = Path(data_dir) / PHANTOM_FILES["reference"]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: IBSI reference values not found (the IBSI digital phantom folder holds "
                                f"{', '.join(PHANTOM_FILES.values())})")
    table = pd.read_csv(path, encoding="utf-8-sig")
    missing = {"family", "feature", "reference value", "tolerance", "tag"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: columns {sorted(missing)} missing; expected IBSI's reference value table")
    return pd.DataFrame({"tag": table["tag"], "family": table["family"].str.split().str.join(" "),
                         "feature": table["feature"], "reference": table["reference value"],
                         "tolerance": table["tolerance"]})


def _extract(params: Path, image, mask, settings: dict) -> dict[str, float]:
    import radiomics
    from radiomics import featureextractor

    from mmdlr.radiomics.extract import EXTRACTOR_LOCK

    radiomics.setVerbosity(logging.ERROR)
    radiomics.logger.setLevel(logging.ERROR)  # deprecated IBSI shape features warn on every extraction
    logging.getLogger("pykwalify").setLevel(logging.WARNING)  # params validation logs every file at INFO
    with EXTRACTOR_LOCK:
        extractor = featureextractor.RadiomicsFeatureExtractor(str(params))
    extractor.settings.update(settings)
    extractor.enableFeatureClassByName("shape2D", False)  # IBSI gives no 2D morphology reference for the phantom
    result = extractor.execute(image, mask)
    return {name.removeprefix("original_"): float(value) for name, value in result.items()
            if not name.startswith("diagnostics_")}


def _slice_masks(mask, axis: int) -> list:
    """One mask per slice (numpy ``axis`` of the array) that holds ROI voxels, the other slices emptied."""
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(mask)
    masks = []
    for index in np.flatnonzero(np.moveaxis(array, axis, 0).any(axis=(1, 2))):
        one = np.zeros_like(array)
        np.moveaxis(one, axis, 0)[index] = np.moveaxis(array, axis, 0)[index]
        image = sitk.GetImageFromArray(one)
        image.CopyInformation(mask)
        masks.append(image)
    return masks


def aggregation_features(aggregation: Aggregation, merged: bool, image_path: Path, mask_path: Path,
                         presets: dict[str, Path]) -> dict[str, float]:
    """PyRadiomics features of the phantom for one aggregation (2D: the mean of the per-slice features)."""
    import SimpleITK as sitk

    params = Path(presets[aggregation.preset])
    settings = PHANTOM_SETTINGS | (MERGED if merged else {})
    if not aggregation.per_slice:
        return _extract(params, str(image_path), str(mask_path), settings)
    image, mask = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(mask_path))
    axis = int((read_params(params).get("setting") or {}).get("force2Ddimension", 0))
    per_slice = pd.DataFrame([_extract(params, image, one, settings) for one in _slice_masks(mask, axis)])
    return per_slice.mean().to_dict()


def _tag(ibsi_feature: str, aggregation: Aggregation, merged: bool) -> str | None:
    """The IBSI tag this run measures for ``ibsi_feature``, or None when another run measures it."""
    if ibsi_feature.startswith(WHOLE_ROI):
        return ibsi_feature if (aggregation.suffix, merged) == ("3D", False) else None
    if ibsi_feature.startswith(PER_DIRECTION):
        return f"{ibsi_feature}_{aggregation.suffix}_{'comb' if merged else 'avg'}"
    return None if merged else f"{ibsi_feature}_{aggregation.suffix}"


def phantom_values(data_dir: str | os.PathLike, presets: dict[str, Path] = PRESETS,
                   mapping: pd.DataFrame | None = None) -> dict[str, float]:
    """Our value (converted as IBSI defines it) of every IBSI tag a PyRadiomics feature measures."""
    data_dir = Path(data_dir)
    for name in ("image", "mask"):
        if not (data_dir / PHANTOM_FILES[name]).is_file():
            raise FileNotFoundError(f"{data_dir / PHANTOM_FILES[name]}: IBSI digital phantom {name} not found")
        read_image(data_dir / PHANTOM_FILES[name])  # its header against io.max_decoded_mb before SimpleITK decodes it
    for key, params in presets.items():
        if not Path(params).is_file():
            raise FileNotFoundError(f"{params}: {key} params file not found (default {PRESETS[key]})")
    if not (read_params(presets["2d"]).get("setting") or {}).get("force2D"):
        raise ValueError(f"{presets['2d']}: the 2D params need 'force2D: true' under 'setting' (IBSI 2D and 2.5D)")
    mapping = read_map() if mapping is None else mapping
    mapped = mapping[mapping["pyradiomics_feature"] != ""]
    values = {}
    for aggregation in AGGREGATIONS:
        for merged in (False, True):
            features = aggregation_features(aggregation, merged, data_dir / PHANTOM_FILES["image"],
                                            data_dir / PHANTOM_FILES["mask"], presets)
            for row in mapped.itertuples():
                tag = _tag(row.ibsi_feature, aggregation, merged)
                if tag is not None:
                    value = features[row.pyradiomics_feature]
                    values[tag] = CONVERSIONS[row.conversion](value) if row.conversion else value
    return values


def within_tolerance(value: float, reference: float, tolerance: float) -> bool:
    """Our value, rounded to the 3 significant digits IBSI reports, within the reference's tolerance."""
    rounded = float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    return abs(rounded - reference) <= tolerance + 1e-9 * max(1.0, abs(reference))


def compliance_table(data_dir: str | os.PathLike, presets: dict[str, Path] = PRESETS) -> pd.DataFrame:
    """One row per IBSI reference feature: its PyRadiomics feature, reference ± tolerance, our value, whether it
    matches (``yes``/``no``; empty without a value or a reference), what the map expects and the reason."""
    mapping = read_map()
    reference = read_reference(data_dir)
    values = phantom_values(data_dir, presets, mapping)
    base = ibsi_features(reference["tag"])
    unknown = sorted(set(base) - set(mapping["ibsi_feature"]))
    if unknown:
        raise ValueError(f"{MAP_FILE}: IBSI features {unknown} have no row; add them")
    rows = mapping.set_index("ibsi_feature").loc[base].reset_index()
    table = reference.assign(pyradiomics_feature=rows["pyradiomics_feature"].to_numpy(),
                             value=reference["tag"].map(values))
    table["match"] = [("yes" if within_tolerance(v, r, t) else "no") if pd.notna(v) and pd.notna(r) else ""
                      for v, r, t in zip(table["value"], table["reference"], table["tolerance"])]
    table["expected"] = rows["compliant"].to_numpy()
    table["reason"] = rows["note"].to_numpy()
    return table


def unexpected(table: pd.DataFrame) -> pd.DataFrame:
    """Rows whose measured match differs from what ``ibsi_map.csv`` (and so docs/radiomics.md) says."""
    return table[table["match"] != table["expected"]]


def compliance_markdown(table: pd.DataFrame) -> str:
    """The compliance table for docs/radiomics.md: every IBSI feature PyRadiomics computes, then those it lacks."""
    measured = table[table["pyradiomics_feature"] != ""]
    lines = ["| IBSI feature | tag | PyRadiomics | reference ± tolerance | mmdlr | match | note |",
             "|---|---|---|---|---|---|---|"]
    for row in measured.itertuples():
        lines.append(f"| {row.family}: {row.feature} | `{row.tag}` | `{row.pyradiomics_feature}` | "
                     f"{row.reference:g} ± {row.tolerance:g} | {row.value:.4g} | {row.match} | {row.reason} |")
    absent = table[table["pyradiomics_feature"] == ""]
    lines += ["", "IBSI features PyRadiomics does not compute (every aggregation):", ""]
    for reason, group in absent.groupby("reason", sort=True):
        tags = dict.fromkeys(ibsi_features(group["tag"]))
        lines.append(f"- {reason}: " + ", ".join(f"`{tag}`" for tag in tags))
    return "\n".join(lines) + "\n"


def compliance_summary(table: pd.DataFrame) -> str:
    measured = table[table["match"] != ""]
    return (f"{(measured['match'] == 'yes').sum()} of {len(measured)} IBSI features PyRadiomics computes match "
            f"the reference; {len(table) - len(measured)} of {len(table)} have no PyRadiomics value or no reference")


def extraction_settings(params: dict) -> list[tuple[str, str]]:
    """The extraction settings of a PyRadiomics params dict (a loaded YAML) in IBSI terms, PyRadiomics'
    defaults filled in: resampling, re-segmentation, discretisation, aggregation, ..."""
    setting = params.get("setting") or {}
    spacing = setting.get("resampledPixelSpacing")
    grid = " × ".join(f"{s:g}" if s else "original" for s in spacing or [])
    resampling = (f"to {grid} mm ({setting.get('interpolator', 'sitkBSpline')} interpolation)" if spacing
                  else "none")
    normalise = (f"z-score, × {setting.get('normalizeScale', 1):g}" if setting.get("normalize") else "none")
    resegment = setting.get("resegmentRange")
    resegmentation = (f"intensity range {resegment} ({setting.get('resegmentMode', 'absolute')})"
                      if resegment else "none")
    if setting.get("binCount") is not None:
        discretisation = f"fixed bin number, {setting['binCount']} bins"
    else:
        discretisation = (f"fixed bin size {setting.get('binWidth', 25):g} (PyRadiomics puts the bin edges at its "
                          "multiples; IBSI starts them at the ROI minimum)")
    if setting.get("force2D"):
        dimension = f"2D (in-plane neighbours, slices along array axis {setting.get('force2Ddimension', 0)})"
    else:
        dimension = "3D (26-connected neighbours)"
    directions = ("direction matrices merged before computing features" if setting.get("weightingNorm")
                  else "features averaged over directions")
    distances = ", ".join(str(d) for d in setting.get("distances", [1]))
    filters = ", ".join(params.get("imageType") or {"Original": {}})
    classes = ", ".join(params.get("featureClass") or ["all"])
    return [("Resampling", resampling), ("Intensity normalisation", normalise),
            ("Re-segmentation", resegmentation), ("Discretisation", discretisation),
            ("Aggregation", f"{dimension}; texture: {directions}; neighbour distance {distances} (Chebyshev)"),
            ("Intensity shift", f"{setting.get('voxelArrayShift', 0):g}"),
            ("Image types", filters), ("Feature classes", classes)]


def read_params(path: str | os.PathLike) -> dict:
    return yaml.safe_load(Path(path).read_text()) or {}


def phantom_params(path: str | os.PathLike) -> dict:
    """The params file's settings as ``mmdlr ibsi`` runs them on the phantom (``PHANTOM_SETTINGS`` in place)."""
    params = read_params(path)
    return params | {"setting": (params.get("setting") or {}) | PHANTOM_SETTINGS}


def run_settings_text(section) -> str:
    """The settings of a run's ``RadiomicsSection``: its 2D params, and its 3D params under ``dimension: 3d``."""
    from mmdlr.radiomics.extract import DEFAULT_PARAMS

    files = [("2D ROIs", section.params_2d or DEFAULT_PARAMS["2d"])]
    if section.dimension == "3d":
        files.append(("3D ROIs of volumes", section.params_3d or DEFAULT_PARAMS["3d"]))
    return settings_text({f"{kind} ({Path(path).name})": read_params(path) for kind, path in files})


def settings_text(params: dict[str, dict]) -> str:
    """``extraction_settings`` of each params dict as one sentence, e.g. ``{"2D ROIs (radiomics_2d.yaml)": {...}}``."""
    return " ".join(f"{kind}: " + "; ".join(f"{k.lower()} {v}" for k, v in extraction_settings(one)) + "."
                    for kind, one in params.items())
