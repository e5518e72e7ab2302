#!/usr/bin/env python
"""BUSI split into two pseudo-centres by image size: leave-centre-out with and without ComBat (section 5).

BUSI has no site or scanner column. Its PNGs are crops of different sizes; the heights fall into two groups
(about 560 x 470 and 770 x 580 pixels) with few images between, so ``--height-cut`` (520 px) makes centre A
(shorter) and B (taller). The script

1. reads each image's size from the de-duplicated manifest (``mmdlr import-busi``) and prints, per centre, the
   images, malignant share (Fisher exact test of the class balance) and size range, and the AUC of the image
   height alone as a malignancy score;
2. copies the feature tables that ``busi_quality.py`` extracted (radiomics and EfficientNet-Lite0 deep features)
   with the centre as their ``center`` column into ``--work``;
3. prints the centre effect: the share of features whose centres differ, raw and after ComBat
   (``multicenter_combat.centre_effect_table``), and per radiomic feature class;
4. runs ``mmdlr.analysis.run_analysis`` (radiomics, deep, radiomics+deep; ``--classifiers``) under
   ``protocol: leave_center_out`` without and with ``harmonize.combat``, for the height split and for a
   control split drawn at random with the same centre sizes and class counts; and nested CV 5 x 1 within each
   pseudo-centre (what training on the same centre gives its patients).

One CSV row per split, protocol, ComBat setting, family, method and test centre: AUC with its DeLong 95%
interval (``mmdlr.evaluate.auc_ci``), accuracy, sensitivity and specificity at the run's threshold, and a paired
DeLong p on the same patients (with ComBat: against without; within the centre: against the height split's
leave-centre-out without ComBat). ``both`` pools the two centres' out-of-centre predictions.

    .venv/bin/python scripts/benchmarks/busi_pseudo_centres.py           # full run (docs/benchmarks.md section 5)
    .venv/bin/python scripts/benchmarks/busi_pseudo_centres.py --quick   # smoke run: 60 images per centre, lr only
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.stats import fisher_exact, ttest_ind
from sklearn.metrics import roc_auc_score

from mmdlr.evaluate import auc_ci, binary_metrics, delong_test

from busi_quality import REPO, analysis_config, run_one
from multicenter_combat import centre_effect_table

TABLES = ("radiomics_us.csv", "deep_us.csv")
FAMILIES = ["radiomics", "deep", "radiomics+deep"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=Path("/tmp/mmdlr-bench/busi/busi.csv"),
                        help="de-duplicated BUSI manifest (busi_quality.py writes it with mmdlr import-busi)")
    parser.add_argument("--features", type=Path,
                        default=Path("/tmp/mmdlr-bench/busi/full/features/dedup_efficientnet_lite0-imagenet"),
                        help="folder with radiomics_us.csv and deep_us.csv of the de-duplicated cohort "
                             "(busi_quality.py writes it)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmdlr-bench/busi_pseudo_centres"),
                        help="feature tables with the centre column and the analysis outputs")
    parser.add_argument("--csv", type=Path, default=REPO / "docs/benchmarks/busi_pseudo_centres.csv")
    parser.add_argument("--height-cut", type=int, default=520, help="images at least this tall are centre B")
    parser.add_argument("--classifiers", default="lr,svm", help="classifiers searched by inner CV (comma list)")
    parser.add_argument("--n-jobs", type=int, default=2, help="analysis workers")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 60 images per centre, lr only, 200 bootstraps, --csv not written")
    return parser.parse_args(argv)


def pseudo_centres(manifest: Path, height_cut: int) -> pd.DataFrame:
    """Per patient: label (0/1), image width and height, and centre A (height < cut) or B."""
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    sizes = []
    for patient, path in zip(table["patient_id"], table["us_image"]):
        path = Path(path) if Path(path).is_absolute() else manifest.parent / path
        if not path.is_file():
            raise SystemExit(f"{manifest}: image {path} of patient {patient} is missing; re-run mmdlr import-busi")
        with Image.open(path) as image:
            sizes.append(image.size)
    return pd.DataFrame({"label": (table["label"].str.lower() == "malignant").astype(int).to_numpy(),
                         "width": [w for w, _ in sizes], "height": [h for _, h in sizes]},
                        index=pd.Index(table["patient_id"], name="patient_id")).assign(
        center=lambda frame: np.where(frame["height"] < height_cut, "A", "B"))


def describe_centres(sizes: pd.DataFrame) -> str:
    """Images, malignant share, size range per centre; Fisher p of the class balance; AUC of height alone."""
    lines = ["| centre | images | malignant | width median [range] | height median [range] |", "|---|---|---|---|---|"]
    for center, part in sizes.groupby("center"):
        lines.append(f"| {center} | {len(part)} | {part['label'].sum()} ({part['label'].mean():.0%}) | "
                     f"{part['width'].median():.0f} [{part['width'].min()}-{part['width'].max()}] | "
                     f"{part['height'].median():.0f} [{part['height'].min()}-{part['height'].max()}] |")
    counts = pd.crosstab(sizes["center"], sizes["label"]).to_numpy()
    lines.append(f"\nclass balance A vs B: Fisher exact p = {fisher_exact(counts).pvalue:.3f}; AUC of the image "
                 f"height as a malignancy score: {roc_auc_score(sizes['label'], sizes['height']):.3f} (width "
                 f"{roc_auc_score(sizes['label'], sizes['width']):.3f}); within A {_height_auc(sizes, 'A'):.3f}, "
                 f"within B {_height_auc(sizes, 'B'):.3f}")
    return "\n".join(lines)


def _height_auc(sizes: pd.DataFrame, center: str) -> float:
    part = sizes[sizes["center"] == center]
    return roc_auc_score(part["label"], part["height"])


def shift_by_feature_class(table_path: Path) -> str:
    """Per radiomic feature class: share of features whose centres differ (Welch p < 0.05) and the median
    absolute standardised mean difference B - A; lesion area in pixels per centre and class."""
    table = pd.read_csv(table_path, dtype={"center": str})
    names = [c for c in table.columns if c.startswith("original_") and np.ptp(table[c]) > 0]
    a, b = (table.loc[table["center"] == center, names] for center in ("A", "B"))
    shift = pd.DataFrame({"feature_class": [name.split("_")[1] for name in names],
                          "differs": ttest_ind(a, b, equal_var=False).pvalue < 0.05,
                          "abs_d": ((b.mean() - a.mean()) / np.sqrt((a.var() + b.var()) / 2)).abs().to_numpy()})
    lines = ["| feature class | features | Welch p < 0.05 | median abs. standardised difference |", "|---|---|---|---|"]
    for feature_class, part in shift.groupby("feature_class"):
        lines.append(f"| {feature_class} | {len(part)} | {part['differs'].mean():.0%} | {part['abs_d'].median():.2f} |")
    area = table.groupby(["center", "label"])["original_shape2D_PixelSurface"].median()
    lines.append("\nmedian lesion area (pixels) benign / malignant: " + "; ".join(
        f"{center} {area[(center, 0)]:.0f} / {area[(center, 1)]:.0f}" for center in ("A", "B")))
    return "\n".join(lines)


def random_centres(sizes: pd.DataFrame, seed: int = 0) -> pd.Series:
    """Centres drawn at random with the height split's size and class counts per centre (the control)."""
    rng = np.random.default_rng(seed)
    centers = pd.Series("B", index=sizes.index)
    for _, part in sizes.groupby("label"):
        centers[rng.choice(part.index, (part["center"] == "A").sum(), replace=False)] = "A"
    return centers


def centre_tables(features: Path, centers: pd.Series, folder: Path) -> list[Path]:
    """The feature tables restricted to ``centers``' patients, with their centre in the ``center`` column."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in TABLES:
        source = features / name
        if not source.is_file():
            raise SystemExit(f"{source} is missing: run scripts/benchmarks/busi_quality.py first (it extracts the "
                             "BUSI feature tables), or give --features")
        table = pd.read_csv(source, dtype={"patient_id": str, "group": str, "split": str}, keep_default_na=False)
        unknown = sorted(set(centers.index) - set(table["patient_id"]))
        if unknown:
            raise SystemExit(f"{source}: patient {unknown[0]} of the manifest has no features; give the tables of "
                             "the same (de-duplicated) cohort")
        table = table[table["patient_id"].isin(centers.index)].assign(split="").copy()  # one block before insert
        table.insert(4, "center", table["patient_id"].map(centers))
        table.to_csv(folder / name, index=False)
        written.append(folder / name)
    return written


def quick_subset(sizes: pd.DataFrame) -> pd.DataFrame:
    """60 images per centre, both classes in each (the first 20 malignant and 40 benign by patient id)."""
    return pd.concat([part.sort_index().head(20 if label else 40)
                      for (_, label), part in sizes.groupby(["center", "label"])]).sort_index()


def result_rows(predictions: pd.DataFrame, centers: pd.Series, reference: pd.DataFrame | None = None,
                **setting) -> list[dict]:
    """One row per family, method and test centre (and ``both`` pooled when two are tested): AUC with its DeLong
    interval, accuracy, sensitivity and specificity at the run's threshold, and the paired DeLong p against
    ``reference``'s predictions for the same patients (NaN without one)."""
    rows = []
    if reference is not None:
        reference = reference.set_index(["family", "method", "patient_id"]).sort_index()
    for (family, method), part in predictions.groupby(["family", "method"], sort=False):
        part = part.set_index("patient_id")
        tested_centres = sorted(part.index.map(centers).unique())
        for center in tested_centres + (["both"] if len(tested_centres) > 1 else []):
            tested = part if center == "both" else part[part.index.map(centers) == center]
            labels, probability = tested["label"].to_numpy(), tested["probability"].to_numpy()
            auc, interval = auc_ci(labels, probability)
            metrics = binary_metrics(labels, probability, float(tested["threshold"].iloc[0]))
            p = np.nan
            if reference is not None:
                other = reference.loc[(family, method)].loc[tested.index, "probability"].to_numpy()
                p = delong_test(labels, other, probability)[1]
            rows.append({**setting, "family": family, "method": method, "test_centre": center,
                         "classifier": "; ".join(sorted(tested["classifier"].unique())),
                         "n": len(tested), "malignant": int(labels.sum()), "auc": auc, "auc_low": interval.low,
                         "auc_high": interval.high, "accuracy": metrics["accuracy"],
                         "sensitivity": metrics["sensitivity"], "specificity": metrics["specificity"],
                         "delong_p": p})
    return rows


def _auc(row, suffix: str = "") -> str:
    return f"{row[f'auc{suffix}']:.3f} [{row[f'auc_low{suffix}']:.3f}, {row[f'auc_high{suffix}']:.3f}]"


def _p(p: float) -> str:
    return "< 0.01" if p < 0.01 else f"{p:.2f}"


def combat_markdown(rows: pd.DataFrame) -> str:
    """Height split, leave-centre-out: without and with ComBat side by side."""
    keys = ["family", "method", "test_centre"]
    split = rows[(rows["split"] == "height") & (rows["protocol"] == "leave_center_out")]
    both = split[~split["combat"]].merge(split[split["combat"]], on=keys, suffixes=("", "_combat"))
    lines = ["| family | rows | test centre (n, malignant) | AUC without [95% CI] | AUC with ComBat [95% CI] | "
             "DeLong p | accuracy without / with | sensitivity without / with | specificity without / with |",
             "|---|---|---|---|---|---|---|---|---|"]
    for _, row in both.iterrows():
        lines.append(f"| {row.family} | {row.method} | {row.test_centre} ({row.n}, {row.malignant}) | {_auc(row)} | "
                     f"{_auc(row, '_combat')} | {_p(row.delong_p_combat)} | "
                     f"{row.accuracy:.3f} / {row.accuracy_combat:.3f} | "
                     f"{row.sensitivity:.3f} / {row.sensitivity_combat:.3f} | "
                     f"{row.specificity:.3f} / {row.specificity_combat:.3f} |")
    return "\n".join(lines)


def control_markdown(rows: pd.DataFrame) -> str:
    """Without ComBat, per test centre: trained on the other pseudo-centre, on the other random centre of the same
    size and class counts, and within the centre (nested CV; DeLong p paired against the first)."""
    keys = ["family", "method", "test_centre"]
    plain = rows[~rows["combat"]]
    height = plain[(plain["split"] == "height") & (plain["protocol"] == "leave_center_out")]
    random = plain[plain["split"] == "random"]
    within = plain[plain["protocol"] == "nested_cv"]
    table = height.merge(random, on=keys, suffixes=("", "_random")).merge(
        within.add_suffix("_within").rename(columns={f"{k}_within": k for k in keys}), on=keys)
    lines = ["| family | rows | test centre | trained on the other pseudo-centre | trained on the other random "
             "centre | trained within the centre (nested CV 5 x 1) | DeLong p other vs within |",
             "|---|---|---|---|---|---|---|"]
    for _, row in table.iterrows():
        lines.append(f"| {row.family} | {row.method} | {row.test_centre} | {_auc(row)} | {_auc(row, '_random')} | "
                     f"{_auc(row, '_within')} | {_p(row.delong_p_within)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("mmdlr", "py.warnings"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not args.manifest.is_file():
        raise SystemExit(f"{args.manifest} is missing: run scripts/benchmarks/busi_quality.py first (it writes the "
                         "de-duplicated manifest), or give --manifest")
    work = args.work / ("quick" if args.quick else "full")
    sizes = pseudo_centres(args.manifest, args.height_cut)
    if args.quick:
        sizes = quick_subset(sizes)
    print(f"pseudo-centres (height < {args.height_cut} px: A)\n{describe_centres(sizes)}")
    tables = centre_tables(args.features, sizes["center"], work / "features" / "height")
    print(f"\ncentre effect (p < 0.05, raw / after ComBat fitted on all images)\n{centre_effect_table(tables)}")
    print(f"\nradiomic features by class\n{shift_by_feature_class(tables[0])}")

    classifiers = ["lr"] if args.quick else args.classifiers.split(",")
    common = {"families": FAMILIES, "classifiers": classifiers, "comparisons": [], "save_models": False,
              "bootstrap.n": 200 if args.quick else 1000, "parallel.n_jobs": args.n_jobs, "nested_cv.repeats": 1}

    def analyse(name: str, folder: Path, **overrides) -> pd.DataFrame:
        load_before = os.getloadavg()[0]
        result, seconds = run_one(name, folder, work, analysis_config("nested_cv.yaml", **common, **overrides))
        timings.append(f"{name}: {seconds:.0f} s wall, 1-min load {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
        return result.predictions

    timings, rows, leave_center_out = [], [], {}
    for split, centers in {"height": sizes["center"], "random": random_centres(sizes)}.items():
        folder = (tables[0] if split == "height" else
                  centre_tables(args.features, centers, work / "features" / split)[0]).parent
        for combat in (False, True):
            predictions = analyse(f"{split}_leave_center_out_combat_{str(combat).lower()}", folder,
                                  protocol="leave_center_out", **{"harmonize.combat": combat})
            rows += result_rows(predictions, centers, leave_center_out.get((split, False)), split=split,
                                protocol="leave_center_out", combat=combat)
            leave_center_out[(split, combat)] = predictions
    for center in ("A", "B"):
        members = sizes["center"][sizes["center"] == center]
        folder = centre_tables(args.features, members, work / "features" / f"within_{center}")[0].parent
        predictions = analyse(f"within_{center}_nested_cv", folder, protocol="nested_cv")
        rows += result_rows(predictions, members, leave_center_out[("height", False)], split="height",
                            protocol="nested_cv", combat=False)
    rows = pd.DataFrame(rows)
    print(f"\nheight split, leave-centre-out, {', '.join(classifiers)}\n{combat_markdown(rows)}")
    print(f"\ncontrols (without ComBat; random split: seed 0)\n{control_markdown(rows)}\n\n" + "\n".join(timings))
    if not args.quick:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        rows.round(4).to_csv(args.csv, index=False)
        print(f"wrote {args.csv} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
