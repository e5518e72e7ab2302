"""`mmdlr run`: validate -> split -> ROI crops -> per modality bundle training + deep features ->
radiomics -> analysis grid -> CNN baselines -> Grad-CAM -> report, each stage resumable, with provenance.

Run folder: ``manifest.csv`` (the cohort with its hold-out split fixed), ``roi/``, ``deep/`` (bundle
outputs: checkpoints, logs; ``deep/folds/<fold>/`` for the per-fold networks of ``deep.mode: finetune``
under nested CV), ``features/`` (radiomics_<mod>.csv, deep_<mod>.csv, deep_<mod>/<fold>.csv), ``results/``,
``baselines/`` (CNN baselines' bundle outputs), ``gradcam/``, ``report.html``, ``provenance.json``, ``stages/`` (one record per finished stage).
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mmdlr.analysis.grid import _modality_label
from mmdlr.analysis.runner import outer_folds, run_analysis
from mmdlr.analysis.summary import pooled_predictions
from mmdlr.atomic import write_csv
from mmdlr.errors import ManifestError
from mmdlr.evaluate import Fold, holdout_fold
from mmdlr.io.limits import set_max_decoded_mb
from mmdlr.io.manifest import Manifest, parse_label, read_manifest
from mmdlr.io.validate import validate_manifest
from mmdlr.parallel import dask_client
from mmdlr.pipeline.baselines import baselines_stage
from mmdlr.pipeline.bundle import bundle_overrides, run_bundle_config, write_patient_list
from mmdlr.pipeline.config import RunConfig
from mmdlr.pipeline.preflight import require_preflight
from mmdlr.pipeline.provenance import input_hashes, write_provenance
from mmdlr.pipeline.stages import STAGES, StageRunner, code_version
from mmdlr.radiomics.extract import DEFAULT_PARAMS, extract_cohort
from mmdlr.radiomics.robustness import ROBUSTNESS_DIR, extract_perturbed
from mmdlr.roi.cache import crop_cohort, file_digest
from mmdlr.roi.regions import region_names

log = logging.getLogger("mmdlr")
GRADCAM_COLUMNS = ["patient_id", "label", "split", "head_prob_malignant"]
# What judged the Grad-CAM cases (cases.csv's probability_source)
TEST_SPLIT, OUT_OF_FOLD, IN_SAMPLE = ("network head, test split", "out-of-fold (analysis)",
                                      "network head, in-sample (trained on these patients)")


@dataclass
class RunResult:
    out_dir: Path
    report: Path
    provenance: Path
    stages: StageRunner


def _fixed_split_manifest(manifest: Manifest, config: RunConfig, path: Path) -> Path:
    """The cohort with absolute paths and, for the hold-out protocol, the split the analysis will use,
    so the bundle never trains on the analysis's test patients."""
    table = manifest.table.copy()
    for modality in manifest.modalities:
        for kind in ("image", "mask"):
            column = f"{modality}_{kind}"
            table[column] = [";".join(manifest.resolve(p) for p in cell.split(";")) if cell else ""
                             for cell in table[column]]
    labels = pd.Series([parse_label(v) for v in table["label"]], index=table["patient_id"])
    groups = (table["group"].where(table["group"] != "", table["patient_id"]) if "group" in table
              else table["patient_id"]).set_axis(table["patient_id"])
    given = (table["split"] if "split" in table else pd.Series("", index=table.index)).set_axis(table["patient_id"])
    if config.analysis.protocol == "holdout":
        fold = holdout_fold(labels, groups, given, config.analysis.holdout.test_size, config.analysis.seed)
        table["split"] = np.where(table["patient_id"].isin(fold.test), "test", "train")
    return write_csv(table, path)


def per_fold_networks(config: RunConfig) -> bool:
    """Whether the deep stage trains one network per outer fold: a fine-tuned network under nested CV or
    leave-centre-out (frozen-backbone features do not depend on labels; under hold-out the one network skips the
    test split)."""
    return config.deep.enabled and config.deep.mode == "finetune" and config.analysis.protocol != "holdout"


def _per_fold_key(config: RunConfig) -> list | None:
    """What the per-fold networks depend on beyond the manifest and the deep section (None without them)."""
    analysis = config.section("analysis")
    return ([analysis[name] for name in ("protocol", "nested_cv", "seed", "modalities")] if per_fold_networks(config)
            else None)


def nested_folds(manifest: Manifest, config: RunConfig) -> list[Fold]:
    """The analysis's outer folds (nested CV or leave-centre-out), from the manifest's patients with one of its
    modalities, sorted by id as the feature tables give them (the analysis refuses fold tables made for other
    folds)."""
    table = manifest.table.set_index("patient_id").sort_index()
    images = table.columns.intersection([f"{m}_image" for m in config.analysis.modalities or manifest.modalities])
    table = table[(table[images] != "").any(axis=1)]
    groups = table["group"] if "group" in table else pd.Series("", index=table.index)
    return outer_folds(table["label"].map(parse_label), groups, pd.Series("", index=table.index), config.analysis,
                       table.get("center"))


def _fold_manifests(manifest: Manifest, folds: list[Fold], folder: Path) -> dict[str, Path]:
    """Per outer fold, ``folder/<fold>/manifest.csv``: the run's manifest with the fold's test patients
    ``test`` and every other ``train``, so the bundle trains and validates on the fold's training patients."""
    shutil.rmtree(folder, ignore_errors=True)  # networks of an earlier run's folds
    table = manifest.table
    return {fold.name: write_csv(table.assign(split=np.where(table["patient_id"].isin(fold.test), "test", "train")),
                                 folder / fold.name / "manifest.csv") for fold in folds}


def _train_and_embed(config: RunConfig, modality: str, manifest_path: Path, deep_dir: Path,
                     features_path: Path) -> list[Path]:
    """train.json on the manifest's non-test patients, then inference.json's deep features of every patient (with a
    frozen backbone, those of the patients training passed through it are reused, not computed again)."""
    deep = config.deep
    feature_cache = str(deep_dir / "models" / modality / "frozen_features.npz") if deep.mode == "frozen" else None
    run_bundle_config("train", "train", **bundle_overrides(
        config, deep_dir, modality, manifest=str(manifest_path), weights=deep.weights, mode=deep.mode,
        max_epochs=deep.max_epochs, batch_size=deep.batch_size, learning_rate=deep.learning_rate, seed=deep.seed,
        feature_cache=feature_cache))
    run_bundle_config("inference", **bundle_overrides(config, deep_dir, modality, manifest=str(manifest_path),
                                                      output_path=str(features_path), feature_cache=feature_cache))
    if feature_cache:
        Path(feature_cache).unlink()
    return [features_path, deep_dir / "models" / modality / "model.pt"]


def _deep_stage(manifest: Manifest, config: RunConfig, out: Path) -> list[Path]:
    """Per modality: the network of the run's split (all non-test patients) and its ``deep_<mod>.csv``; with
    :func:`per_fold_networks` also one network per outer fold and its ``deep_<mod>/<fold>.csv``."""
    deep = config.deep
    folds = nested_folds(manifest, config) if per_fold_networks(config) else []
    fold_manifests = _fold_manifests(manifest, folds, out / "deep" / "folds")
    if folds:
        log.info("deep.mode finetune under nested CV: %d networks per modality, one per outer fold on its training "
                 "patients (their features and Grad-CAM for its test patients) and one on all patients (saved models)",
                 len(folds) + 1)
    written = list(fold_manifests.values())
    for modality in manifest.modalities:
        log.info("deep features: %s (%s, %s)", modality, deep.backbone, deep.mode)
        fold_tables = out / "features" / f"deep_{modality}"
        shutil.rmtree(fold_tables, ignore_errors=True)  # an earlier run's folds would replace this run's features
        written += _train_and_embed(config, modality, manifest.path, out / "deep",
                                    out / "features" / f"deep_{modality}.csv")
        for fold in folds:
            log.info("deep features: %s, outer fold %s", modality, fold.name)
            written += _train_and_embed(config, modality, fold_manifests[fold.name], out / "deep" / "folds" / fold.name,
                                        fold_tables / f"{fold.name}.csv")
    return written


def _radiomics_stage(index: pd.DataFrame, config: RunConfig, out: Path) -> list[Path]:
    section, parallel = config.radiomics, config.analysis.parallel
    params = {"2d": section.params_2d or DEFAULT_PARAMS["2d"], "3d": section.params_3d or DEFAULT_PARAMS["3d"]}
    regions, features = region_names(config.roi.regions), out / "features"
    for stale in features.glob("radiomics_*.csv"):  # an earlier run's regions would join the analysis
        stale.unlink()
    shutil.rmtree(features / ROBUSTNESS_DIR, ignore_errors=True)

    def extract(backend: str) -> list[Path]:
        written = list(extract_cohort(index, features, section.dimension, params, section.n_jobs, backend,
                                      regions=regions).values())
        if section.robustness:
            written += extract_perturbed(index, features, section.robustness, section.dimension, params, regions,
                                         section.n_jobs, backend)
        return written

    if parallel.backend == "dask":
        with dask_client(parallel.scheduler_address, section.n_jobs):
            return extract("dask")
    return extract("loky")


def gradcam_cases(deep_table: pd.DataFrame, per_kind: int, out_of_fold: pd.DataFrame | None = None) -> pd.DataFrame:
    """The most confident correct and wrong cases of one modality, judged out of sample where possible: by the
    network's head on the test split, else by ``out_of_fold`` (patient_id, probability: the analysis's
    out-of-fold predictions), else (neither) in-sample on every patient. ``probability_source`` says which;
    ``head_prob_malignant`` is always the probability of the network whose Grad-CAM is drawn (a ``fold``
    column, kept, names each case's network)."""
    if (deep_table["split"] == "test").any():
        table = deep_table[deep_table["split"] == "test"].assign(probability=deep_table["head_prob_malignant"],
                                                                 probability_source=TEST_SPLIT)
    elif out_of_fold is not None and len(out_of_fold):
        table = deep_table.merge(out_of_fold[["patient_id", "probability"]], on="patient_id").assign(
            probability_source=OUT_OF_FOLD)
    else:
        table = deep_table.assign(probability=deep_table["head_prob_malignant"], probability_source=IN_SAMPLE)
    predicted = (table["probability"] >= 0.5).astype(int)
    table = table.assign(correct=predicted == table["label"], confidence=(table["probability"] - 0.5).abs())
    picks = [table[table["correct"] == kind].nlargest(per_kind, "confidence") for kind in (True, False)]
    return pd.concat(picks)[["patient_id", "label", "probability", "probability_source", "correct",
                             "head_prob_malignant", *(["fold"] if "fold" in table else [])]]


def _out_of_fold(predictions: Path, modality: str) -> pd.DataFrame | None:
    """Each patient's out-of-fold probability from the analysis's deep single-modality row (nested CV only)."""
    table = pd.read_csv(predictions, dtype={"patient_id": str}, keep_default_na=False)
    chosen = table[(table["family"] == "deep") & (table["method"] == _modality_label([modality]))]
    return pooled_predictions(chosen) if len(chosen) else None


def _tested_by_fold_networks(folder: Path, folds: list[Fold]) -> pd.DataFrame:
    """Each patient's row (split ``test``) of the fold table of the first outer fold that tested it, ``fold``
    naming it: the head probability of a network that never saw the patient."""
    tables = [pd.read_csv(folder / f"{fold.name}.csv", keep_default_na=False, dtype={"patient_id": str},
                          usecols=GRADCAM_COLUMNS).query("split == 'test'").assign(fold=fold.name) for fold in folds]
    return pd.concat(tables, ignore_index=True).drop_duplicates("patient_id")


def _cases_by_network(cases: pd.DataFrame, deep_dir: Path) -> list[tuple[Path, str, pd.DataFrame]]:
    """(bundle output folder, name, cases) per network drawing Grad-CAM: each fold's (``fold`` column) or the one."""
    if "fold" not in cases:
        return [(deep_dir, "patients", cases)]
    return [(deep_dir / "folds" / fold, f"patients_{fold}", chosen)
            for fold, chosen in cases.groupby("fold", sort=False)]


def _gradcam_stage(manifest: Manifest, config: RunConfig, out: Path) -> list[Path]:
    written = []
    folds = nested_folds(manifest, config) if per_fold_networks(config) else []
    for modality in manifest.modalities:
        out_of_fold = None
        if folds:  # each case judged and drawn by a network of a fold that tested it
            deep_table = _tested_by_fold_networks(out / "features" / f"deep_{modality}", folds)
        else:
            deep_table = pd.read_csv(out / "features" / f"deep_{modality}.csv", keep_default_na=False,
                                     dtype={"patient_id": str}, usecols=GRADCAM_COLUMNS)
        if config.analysis.protocol != "holdout" and not folds:  # the head saw every patient: judge out of fold
            deep_table["split"] = ""
            out_of_fold = _out_of_fold(out / "results" / "predictions.csv", modality)
        cases = gradcam_cases(deep_table, config.report.gradcam_cases, out_of_fold)
        target = out / "gradcam" / modality
        for deep_dir, name, chosen in _cases_by_network(cases, out / "deep"):
            patients_file = write_patient_list(chosen["patient_id"], target / f"{name}.json")
            run_bundle_config("gradcam", **bundle_overrides(config, deep_dir, modality, manifest=str(manifest.path),
                                                            gradcam_dir=str(target), patients_file=str(patients_file),
                                                            num_patients=len(chosen)))
        written.append(write_csv(cases, target / "cases.csv"))
    return written


def run_pipeline(manifest_path: str | Path, config: RunConfig, out_dir: str | Path, force: Iterable[str] = (),
                 progress: bool = True) -> RunResult:
    """Run every stage (skipping finished ones) and write the report and provenance."""
    from mmdlr.report.html import write_report

    set_max_decoded_mb(config.io.max_decoded_mb)
    out = Path(out_dir).resolve()
    require_preflight(manifest_path, config, out)
    out.mkdir(parents=True, exist_ok=True)
    unknown = set(force) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) to force: {', '.join(sorted(unknown))}; stages: {', '.join(STAGES)}")
    runner = StageRunner(out, force, code_version(), progress)
    source = Manifest.from_csv(manifest_path)
    hashes = input_hashes(source) if not source.structural_problems() else {}

    def validate():
        report = validate_manifest(source.path, config.roi.label_value, progress, config.roi.mask_threshold,
                                   config.analysis.parallel.n_jobs)
        for warning in report.warnings:
            log.warning("validate: %s", warning)
        if not report.ok:
            raise ManifestError(report.problems)
        return [write_csv(report.summary, out / "cohort_summary.csv")]

    runner.run("validate", [hashes, config.roi.label_value, config.roi.mask_threshold], validate)
    runner.run("split", [hashes, config.section("analysis")["protocol"], config.section("analysis")["holdout"],
                         config.analysis.seed], lambda: [_fixed_split_manifest(source, config, out / "manifest.csv")])
    manifest = read_manifest(out / "manifest.csv")
    roi_key = [hashes, config.section("roi")]

    def crop():
        crop_cohort(manifest, out, config.roi, progress, config.analysis.parallel.n_jobs)
        return [out / "roi" / "roi_index.csv"]

    runner.run("crop", roi_key, crop)
    index = pd.read_csv(out / "roi" / "roi_index.csv", keep_default_na=False,
                        dtype={"patient_id": str, "group": str, "split": str, "center": str})
    split_key = file_digest(out / "manifest.csv")  # content: a setting that leaves the split alone reruns nothing
    if config.deep.enabled:
        runner.run("deep", [roi_key, split_key, config.section("deep"), _per_fold_key(config)],
                   lambda: _deep_stage(manifest, config, out))
    params = [Path(config.radiomics.params_2d or DEFAULT_PARAMS["2d"]).read_text(),
              Path(config.radiomics.params_3d or DEFAULT_PARAMS["3d"]).read_text()]
    runner.run("radiomics", [roi_key, split_key, config.section("radiomics"), params],
               lambda: _radiomics_stage(index, config, out))
    feature_keys = [runner.records[name].key for name in ("deep", "radiomics") if name in runner.records]
    runner.run("analysis", [feature_keys, config.section("analysis")],
               lambda: [run_analysis(out / "features", out, config.analysis, out / "manifest.csv",
                                     progress).results_dir])
    if config.deep.baselines and config.analysis.protocol == "holdout":
        runner.run("baselines", [roi_key, split_key, config.section("deep"), config.section("analysis")["bootstrap"]],
                   lambda: baselines_stage(manifest, config, out))
    if config.deep.enabled:
        # cases chosen by a network's head on patients it never saw (hold-out, per-fold networks), else (one
        # network trained on every patient under nested CV) by the analysis's out-of-fold row
        nested_one_network = config.analysis.protocol != "holdout" and not per_fold_networks(config)
        chosen_by = runner.records["analysis"].key if nested_one_network else "head"
        runner.run("gradcam", [runner.records["deep"].key, chosen_by, config.section("report")],
                   lambda: _gradcam_stage(manifest, config, out))
    report = out / "report.html"
    runner.run("report", [[record.key for record in runner.records.values()], config.raw],
               lambda: [write_report(out, config, source)])
    provenance = write_provenance(out, config.raw, source, hashes, runner.records, runner.code, sys.argv)
    return RunResult(out, report, provenance, runner)
