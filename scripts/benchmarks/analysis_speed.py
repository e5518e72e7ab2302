#!/usr/bin/env python
"""Speed of the analysis grid (``mmdlr analyze`` under nested CV) on BUSI's feature tables, beside the same
analysis written as the textbook scikit-learn nested loop, and beside an earlier mmdlr commit.

Variants, each in its own process, timed in one run (wall time, and CPU seconds of the whole process tree
polled with psutil every 0.5 s, which a shared machine's load disturbs less than wall time):

``mmdlr``     ``mmdlr analyze --config configs/nested_cv.yaml`` (``--repeats``, ``--classifiers`` applied) of
              this checkout.
``unscreened`` the same with ``search.screen_margin: null``: every candidate of the inner-CV search scored in full,
              what the screening saves and what it changes.
``before``    the same command run from an earlier commit (``--before REF``, checked out with ``git worktree``
              under ``--work``), the baseline of a speed change.
``textbook``  the nested loop a user of WORC- or AutoRadiomics-style code writes: the same selection steps and
              grids (mmdlr's step builders, so the same estimators), ``GridSearchCV`` per row inside the same
              outer folds with no shared pre-processing, the ensemble fitting its own base searches, and
              scikit-learn's ``StackingClassifier`` (base searches cross-validated inside, meta-learner
              searched), every row refitted on all patients at the end as mmdlr saves its final models.

Each variant's pooled out-of-fold AUC per row is printed so the variants can be seen to compute the same
analysis; ``mmdlr`` is compared row by row with ``unscreened`` and ``before`` (AUC difference, agreement of the
classifier chosen per fold). Writes ``docs/benchmarks/analysis_speed.csv`` (benchmark, variant, value, unit).

    .venv/bin/python scripts/benchmarks/analysis_speed.py --before dff92f7                  # full BUSI, 5 x 3
    .venv/bin/python scripts/benchmarks/analysis_speed.py --before dff92f7 --patients 200 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[2]
DEFAULT_FEATURES = Path("/tmp/mmdlr-bench/busi/full/features/dedup_efficientnet_lite0-imagenet")
VARIANTS = ("mmdlr", "unscreened", "before", "textbook")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=Path, default=DEFAULT_FEATURES,
                        help="BUSI feature tables (radiomics_us.csv, deep_us.csv) as scripts/benchmarks/"
                             "busi_quality.py writes them")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmdlr-bench/analysis_speed"))
    parser.add_argument("--csv", type=Path, default=REPO / "docs/benchmarks/analysis_speed.csv")
    parser.add_argument("--repeats", type=int, default=3, help="outer 5-fold x REPEATS")
    parser.add_argument("--patients", type=int, default=0, help="stratified subsample (0: every patient)")
    parser.add_argument("--classifiers", default="", help="comma list (default: the config's seven)")
    parser.add_argument("--before", default="", help="git commit to time as the baseline (omit: skip)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--textbook-worker", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def load() -> float:
    return os.getloadavg()[0]


def analysis_config(args, root: Path, screened: bool = True) -> Path:
    """``root``'s configs/nested_cv.yaml with ``--repeats`` and ``--classifiers`` applied (and without screening),
    written under --work."""
    config = yaml.safe_load((root / "configs/nested_cv.yaml").read_text())
    config["nested_cv"]["repeats"] = args.repeats
    if args.classifiers:
        config["classifiers"] = {name: config["classifiers"][name] for name in args.classifiers.split(",")}
    if not screened:
        config["search"]["screen_margin"] = None
    path = args.work / f"nested_cv_{root.name}{'' if screened else '_unscreened'}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def subsampled_features(args) -> Path:
    """The feature tables, or a stratified subsample of ``--patients`` of them (same patients in every table)."""
    if not args.patients:
        return args.features
    folder = args.work / f"features_{args.patients}"
    folder.mkdir(parents=True, exist_ok=True)
    tables = {path.name: pd.read_csv(path, dtype={"patient_id": str}) for path in args.features.glob("*.csv")}
    labels = next(iter(tables.values())).set_index("patient_id")["label"]
    rng = np.random.default_rng(0)
    keep = [patient for _, members in labels.groupby(labels)
            for patient in rng.choice(members.index, round(args.patients * len(members) / len(labels)),
                                      replace=False)]
    for name, table in tables.items():
        table[table["patient_id"].isin(keep)].to_csv(folder / name, index=False)
    return folder


def tree_cpu_seconds(root, cpu_by_pid: dict[int, float]) -> float:
    """CPU seconds (user + system) of psutil process ``root`` and its descendants so far; ``cpu_by_pid`` keeps each
    process's last reading, so processes that have ended still count."""
    import psutil

    for member in [root, *root.children(recursive=True)]:
        try:
            times = member.cpu_times()
            cpu_by_pid[member.pid] = max(cpu_by_pid.get(member.pid, 0.0), times.user + times.system)
        except psutil.Error:
            continue
    return sum(cpu_by_pid.values())


def timed(command: list[str], env: dict | None = None) -> tuple[float, float]:
    """Run ``command``; wall seconds and CPU seconds of its whole process tree (psutil, 0.5 s polling)."""
    import psutil

    start = time.perf_counter()
    process = subprocess.Popen(command, env=env)
    root, cpu = psutil.Process(process.pid), {}
    while process.poll() is None:
        tree_cpu_seconds(root, cpu)
        time.sleep(0.5)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed with exit status {process.returncode}")
    return time.perf_counter() - start, sum(cpu.values())


def before_checkout(args) -> Path:
    """The ``--before`` commit's checkout (a git worktree under --work)."""
    worktree = args.work / f"before_{args.before}"
    if not worktree.is_dir():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), args.before],
                       check=True)
    return worktree


def pooled_auc(predictions: pd.DataFrame) -> pd.Series:
    from sklearn.metrics import roc_auc_score

    pooled = predictions.groupby(["family", "method", "patient_id"]).agg(
        probability=("probability", "mean"), label=("label", "first")).reset_index()
    return pooled.groupby(["family", "method"]).apply(
        lambda frame: roc_auc_score(frame["label"], frame["probability"]), include_groups=False)


# ------------------------------------------------------------------------------------- textbook loop

def textbook(features_dir: Path, config_path: Path, out: Path) -> None:
    """The textbook nested loop on the same features, folds, steps and grids; writes its predictions."""
    import warnings

    from scipy.special import softmax
    from sklearn.ensemble import StackingClassifier
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from mmdlr.analysis import load_config, load_feature_set
    from mmdlr.analysis.runner import outer_folds
    from mmdlr.classify import deep_steps, make_classifier, rad_df_steps, radiomics_steps
    from mmdlr.evaluate import StratifiedFoldsWithGroups

    warnings.filterwarnings("ignore")
    config = load_config(config_path)
    features = load_feature_set(features_dir, config.modalities)
    blocks = features.block_columns(list(features.blocks))
    radiomics_columns, deep_columns = blocks["radiomics_us"], blocks["deep_us"]
    select, seed, inner = config.select, config.seed, config.inner_folds

    def search(steps):
        grid = [{"clf": [make_classifier(name, seed)], **{f"clf__{k}": list(v) for k, v in params.items()}}
                for name, params in config.classifiers.items()]
        return GridSearchCV(Pipeline([*steps, ("clf", grid[0]["clf"][0])]), grid,
                            scoring={"auc": "roc_auc", "accuracy": "accuracy"}, refit="auc",
                            cv=StratifiedFoldsWithGroups(inner, seed))

    def radiomics():
        return search(radiomics_steps(radiomics_columns, select.mannwhitney_p, select.spearman_rho,
                                      select.lasso_alphas, select.fallback_k, inner, seed))

    def deep():
        return search(deep_steps({"deep_us": deep_columns}, config.pca.deep, seed))

    def ensemble_probability(X_train, y_train, X_test):
        fitted = [radiomics().fit(X_train, y_train), deep().fit(X_train, y_train)]
        weights = softmax([model.cv_results_["mean_test_accuracy"][model.best_index_] for model in fitted])
        if X_test is None:  # the final fit: nothing to predict
            return []
        return sum(w * model.predict_proba(X_test)[:, 1] for w, model in zip(weights, fitted))

    rows = {
        ("radiomics", "US"): lambda: radiomics(),
        ("deep", "US"): lambda: deep(),
        ("radiomics+deep", "Rad + DF"): lambda: search(rad_df_steps(
            radiomics_steps(radiomics_columns, select.mannwhitney_p, select.spearman_rho, select.lasso_alphas,
                            select.fallback_k, inner, seed),
            deep_steps({"deep_us": deep_columns}, config.pca.deep, seed),
            config.pca.fused_radiomics, config.pca.fused_deep, seed)),
        ("radiomics+deep", "Stacking"): lambda: StackingClassifier(
            [("radiomics", radiomics()), ("deep", deep())], final_estimator=search([("scale", StandardScaler())]),
            cv=StratifiedFoldsWithGroups(inner, seed), stack_method="predict_proba"),
    }
    X, y = features.frame, features.labels
    predictions = []
    for fold in [*outer_folds(features.labels, features.groups, features.split, config), None]:
        train = list(X.index) if fold is None else list(fold.train)
        for (family, method), make in [*rows.items(), (("radiomics+deep", "Ensemble"), None)]:
            if make is None:
                probability = ensemble_probability(X.loc[train], y.loc[train], X.loc[list(fold.test)] if fold
                                                   else None)
            else:
                model = make().fit(X.loc[train], y.loc[train])
                probability = model.predict_proba(X.loc[list(fold.test)])[:, 1] if fold else []
            if fold is not None:
                predictions.append(pd.DataFrame({"patient_id": list(fold.test), "fold": fold.name, "family": family,
                                                 "method": method, "probability": probability,
                                                 "label": y.loc[list(fold.test)].to_numpy()}))
    pd.concat(predictions).to_csv(out, index=False)


# ------------------------------------------------------------------------------------------------ main

def write_rows(rows: list[dict], csv: Path, setting: str) -> None:
    """Write ``rows`` to ``csv``, keeping the rows of other settings (variants not ending in ``(setting)``)."""
    table = pd.DataFrame(rows)
    csv.parent.mkdir(parents=True, exist_ok=True)
    if csv.is_file():
        previous = pd.read_csv(csv)
        table = pd.concat([previous[~previous["variant"].str.endswith(f"({setting})")], table])
    table.to_csv(csv, index=False)
    print(f"wrote {csv}")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.textbook_worker:
        textbook(args.features, args.textbook_worker.with_suffix(".yaml"), args.textbook_worker)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    features = subsampled_features(args)
    config_path = analysis_config(args, REPO)
    n_patients = len(pd.read_csv(next(features.glob("radiomics_*.csv")), usecols=["patient_id"]))
    setting = (f"BUSI {n_patients} images, nested CV 5x{args.repeats}, "
               f"{args.classifiers or 'seven classifiers'}")
    rows, predictions = [], {}

    def record(variant, value, unit, what=""):
        digits = 5 if unit in ("AUC", "fraction") else 3
        rows.append({"benchmark": "analysis", "variant": f"{variant}{what} ({setting})", "value": round(value, digits),
                     "unit": unit})
        print(f"  {rows[-1]['variant']}: {value:.{digits}f} {unit}", flush=True)

    for variant in args.variants.split(","):
        if variant == "before" and not args.before:
            continue
        out = args.work / f"out_{variant}_{n_patients}_{args.repeats}"
        start_load = load()
        if variant == "textbook":
            target = out.with_suffix(".csv")
            target.with_suffix(".yaml").write_text(config_path.read_text())
            wall, cpu = timed([sys.executable, __file__, "--features", str(features), "--textbook-worker",
                               str(target)])
            predictions[variant] = pd.read_csv(target, dtype={"patient_id": str})
        else:
            env, config = dict(os.environ), config_path
            if variant == "before":
                root = before_checkout(args)
                env["PYTHONPATH"], config = str(root / "src"), analysis_config(args, root)
            elif variant == "unscreened":
                config = analysis_config(args, REPO, screened=False)
            wall, cpu = timed([sys.executable, "-m", "mmdlr.cli.main", "-q", "analyze", "--features",
                               str(features), "--out", str(out), "--config", str(config)], env)
            predictions[variant] = pd.read_csv(out / "results/predictions.csv", dtype={"patient_id": str})
        record(variant, wall, "s", " wall")
        record(variant, cpu, "CPU s", " CPU, process tree")
        record(variant, (start_load + load()) / 2, "load", " load_1min (mean of start and end)")
    aucs = pd.DataFrame({variant: pooled_auc(frame) for variant, frame in predictions.items()})
    print(aucs.round(4).to_string())
    for variant, auc in aucs.items():
        for (family, method), value in auc.dropna().items():
            record(variant, value, "AUC", f" pooled OOF AUC {family} / {method}")
    for reference in ("unscreened", "before"):
        if {"mmdlr", reference} <= set(predictions):
            chosen = {variant: predictions[variant].groupby(["family", "method", "fold"])["classifier"].first()
                      for variant in ("mmdlr", reference)}
            agreement = (chosen["mmdlr"] == chosen[reference].reindex(chosen["mmdlr"].index)).mean()
            record(f"mmdlr vs {reference}", agreement, "fraction", " same classifier chosen (row x fold)")
            record(f"mmdlr vs {reference}", (aucs["mmdlr"] - aucs[reference]).abs().max(), "AUC",
                   " largest |AUC difference|")
    write_rows(rows, args.csv, setting)


if __name__ == "__main__":
    main()
