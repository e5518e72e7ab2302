"""``mmdlr analyze``: fit every grid row under the configured protocol and write the result files."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from joblib import Parallel, delayed, effective_n_jobs, parallel_config

from mmdlr.analysis.bundle import MODEL_SUFFIX, ModelBundle, model_file_bytes
from mmdlr.analysis.clinical import clinical_table
from mmdlr.analysis.comparisons import comparison_table, shown_models
from mmdlr.analysis.config import AnalysisConfig, ParallelConfig, load_config
from mmdlr.analysis.features import FeatureSet, FeatureTableError, load_feature_set
from mmdlr.analysis.fold import PREDICTION_COLUMNS, FoldOutcome, fit_block, fit_row
from mmdlr.analysis.grid import (COMBINED, EARLY, ENSEMBLE, SINGLE, STACKING, TABLE_NAMES, GridRow, SkippedRow,
                                 plan_rows)
from mmdlr.analysis.summary import holdout_row, markdown_table, nested_row, pooled_predictions, result_table
from mmdlr.atomic import atomic_path, write_bytes, write_csv, write_text
from mmdlr.evaluate import (Fold, binary_metrics, holdout_fold, leave_center_out_folds, patient_groups,
                            repeated_folds)
from mmdlr.fuse import BaseFit
from mmdlr.io.manifest import Manifest
from mmdlr.parallel import dask_client, run_here
from mmdlr.terminal import track

log = logging.getLogger(__name__)

TABLE_TITLES = {"radiomics": "Radiomic classification with conventional features (paper Table 2)",
                "deep": "Classification with deep features (paper Table 3)",
                "radiomics+deep": "Fusion of radiomic and deep features (paper Table 4)"}


@dataclass
class AnalysisResult:
    """What a run produced: result tables per family, all predictions, skipped rows, output folder."""

    results_dir: Path
    tables: dict[str, pd.DataFrame]
    predictions: pd.DataFrame
    skipped: list[SkippedRow]


def outer_folds(labels: pd.Series, groups: pd.Series, split: pd.Series, config: AnalysisConfig,
                centers: pd.Series | None = None) -> list[Fold]:
    """The hold-out split, the repeated outer folds of nested CV or one fold per centre (``centers``) over the
    patients of ``labels`` (index sorted by patient_id, as :func:`load_feature_set` gives them; the deep stage
    computes the same folds)."""
    if config.protocol == "holdout":
        return [holdout_fold(labels, groups, split, config.holdout.test_size, config.seed)]
    if config.protocol == "leave_center_out":
        return leave_center_out_folds(labels, centers)
    return repeated_folds(labels, groups, config.nested_cv.outer_folds, config.nested_cv.repeats, config.seed)


def _outer_loop(config: AnalysisConfig, folds: list[Fold]) -> tuple[int, int]:
    """(outer folds per repeat, repeats) of a cross-validated protocol: nested CV's settings, or one fold per
    centre tested once under leave-centre-out."""
    if config.protocol == "leave_center_out":
        return len(folds), 1
    return config.nested_cv.outer_folds, config.nested_cv.repeats


@contextmanager
def parallel_backend(parallel: ParallelConfig, shared: Sequence[object] = ()) -> Iterator[None]:
    """joblib's backend for :func:`run_parallel` (loky, threading, or dask with its client) while open.

    On dask the ``shared`` objects (task arguments common to many tasks: the feature set, the config) are
    scattered to the workers once, and tasks refer to them, instead of shipping them with every task."""
    if parallel.backend != "dask":
        with parallel_config(backend=parallel.backend, n_jobs=parallel.n_jobs):
            yield
        return
    with dask_client(parallel.scheduler_address, parallel.n_jobs), \
            parallel_config(backend="dask", n_jobs=parallel.n_jobs, scatter=list(shared) or None):
        yield


def start_parallel(function: Callable, argument_lists: Sequence[tuple], ordered: bool = False) -> Iterator:
    """``function(*arguments)`` for every argument tuple, dispatched now to the active joblib backend (see
    :func:`parallel_backend`); the generator returned yields the results in completion order, or in the order of
    ``argument_lists``."""
    return Parallel(return_as="generator" if ordered else "generator_unordered")(
        delayed(run_here)(function, *arguments) for arguments in argument_lists)


def run_parallel(function: Callable, argument_lists: Sequence[tuple], description: str, progress: bool = True,
                 ordered: bool = False) -> list:
    """:func:`start_parallel`'s results as a list, counted as they come."""
    return list(track(start_parallel(function, argument_lists, ordered), len(argument_lists), description, "fit",
                      progress))


def run_analysis(features_dir: str | Path, out_dir: str | Path, config: AnalysisConfig | str | Path | None = None,
                 manifest: str | Path | None = None, progress: bool = True) -> AnalysisResult:
    """Run the analysis grid on ``features_dir``'s feature tables and write ``out_dir/results``.

    Writes table_{radiomics,deep,fusion}.csv/.md, predictions.csv, roc_*.png, calibration.png,
    comparisons.csv, shown_models.csv, skipped_rows.csv, config_used.yaml, models/ (skops ModelBundles + index.csv)
    and, for the hold-out protocol with a manifest that has clinical columns or centres, table_clinical.csv; under
    leave-centre-out table_centers.csv (each centre's metrics).
    """
    if not isinstance(config, AnalysisConfig):
        config = load_config(config) if config else AnalysisConfig()
    features = load_feature_set(features_dir, config.modalities)
    log.info("features: %d patients, blocks %s%s", len(features.labels), ", ".join(features.blocks),
             f"; absent tables: {', '.join(features.absent)}" if features.absent else "")
    rows, skipped = plan_rows(features, config)
    for row in skipped:
        log.warning("skipping %s / %s: %s", row.family, row.method, row.reason)
    if not rows:
        raise FeatureTableError(f"no analysis row can run on {features_dir}: "
                         + "; ".join(f"{r.family} / {r.method}: {r.reason}" for r in skipped))
    folds = outer_folds(features.labels, features.groups, features.split, config, features.centers)
    fits = [(fold, config.save_models and config.protocol == "holdout") for fold in folds]
    if config.save_models and config.protocol != "holdout":
        fits.append((None, True))
    log.info("%s: %d rows x %d fold(s) = %d fits", config.protocol, len(rows), len(folds), len(rows) * len(fits))
    fold_features = {_fold_name(fold): features.in_fold(fold) for fold, _ in fits}  # each fold's own deep features
    shared = [config, *{id(fold_set): fold_set for fold_set in fold_features.values()}.values()]
    results_dir = Path(out_dir) / "results"
    with parallel_backend(config.parallel, shared):
        outcomes = _fit_grid(rows, fits, fold_features, config, progress)
        fold_order = [fold.name for fold in folds] + ["all"]
        outcomes.sort(key=lambda outcome: (rows.index(outcome.row), fold_order.index(outcome.fold)))
        bundles = _bundles([o for o in outcomes if o.model is not None], features, config)
        # the workers make the model files while this process writes the tables (on a core of its own)
        chunks = _chunks(bundles, effective_n_jobs(None) - 1)
        model_files = start_parallel(_model_files, [(chunk,) for chunk in chunks], ordered=True)
        predictions, tables = _write_results(rows, skipped, outcomes, folds, features, config, results_dir)
        if bundles:
            files = track(model_files, len(chunks), "model files", "file", progress)
            _write_models(bundles, [data for chunk in files for data in chunk], results_dir / "models")
    if config.protocol == "leave_center_out":
        _write_center_table(predictions, results_dir)
    if manifest is not None:
        _write_clinical(Manifest.from_csv(manifest), folds, config, results_dir)
    log.info("results written to %s", results_dir)
    return AnalysisResult(results_dir, tables, predictions, skipped)


def _call(function: Callable, *arguments):
    return function(*arguments)


def _fit_grid(rows: list[GridRow], fits: list[tuple[Fold | None, bool]], fold_features: dict[str, FeatureSet],
              config: AnalysisConfig, progress: bool) -> list[FoldOutcome]:
    """Every row on every (fold, keep model) on the active backend; ``fold_features``: each fold's feature set by
    fold name.

    Each block's model search is fitted once per fold (with its out-of-fold probabilities where a stacking row or
    a Youden threshold needs them), and the single-modality, ensemble and stacking rows are built from those
    block models: the same models they would fit themselves, on the same training patients, fitted once instead
    of once per row. Where the folds alone keep every worker busy (nested CV), one task per fold fits its blocks
    and then its late rows; otherwise (the hold-out's one fold) the blocks are fitted one task each, then the late
    rows one task each. The early-fusion and combined rows are one task per fold beside them.
    """
    late_kinds = (SINGLE, ENSEMBLE, STACKING)
    out_of_fold = {name for row in rows if row.kind == STACKING for name in row.blocks}
    if config.threshold == "youden":
        out_of_fold |= {row.blocks[0] for row in rows if row.kind == SINGLE}
    late = [row for row in rows if row.kind in late_kinds]
    blocks = list(dict.fromkeys(name for row in late for name in row.blocks))
    row_tasks = [(fit_row, row, fold, fold_features[_fold_name(fold)], config, keep)
                 for row in rows if row.kind not in late_kinds for fold, keep in fits]
    if len(fits) >= effective_n_jobs(None):
        fold_tasks = [(_fit_late_rows, late, fold, fold_features[_fold_name(fold)], config, keep, None,
                       frozenset(out_of_fold)) for fold, keep in fits]
        results = run_parallel(_call, fold_tasks + row_tasks, "analysis grid: models", progress, ordered=True)
        return [outcome for outcomes in results[:len(fold_tasks)] for outcome in outcomes] + results[len(fold_tasks):]
    block_tasks = [(fit_block, name, fold, fold_features[_fold_name(fold)], config, name in out_of_fold)
                   for fold, _ in fits for name in blocks]
    results = run_parallel(_call, block_tasks + row_tasks, "analysis grid: models", progress, ordered=True)
    block_fits = {(task[1], _fold_name(task[2])): fit for task, fit in zip(block_tasks, results)}
    late_tasks = [(_fit_late_rows, [row], fold, fold_features[_fold_name(fold)], config, keep,
                   {name: block_fits[name, _fold_name(fold)] for name in row.blocks}) for row in late
                  for fold, keep in fits]
    late_results = run_parallel(_call, late_tasks, "analysis grid: fusion", progress)
    return results[len(block_tasks):] + [outcome for outcomes in late_results for outcome in outcomes]


def _fit_late_rows(rows: list[GridRow], fold: Fold | None, features: FeatureSet, config: AnalysisConfig,
                   keep_model: bool, bases: dict[str, BaseFit] | None = None,
                   out_of_fold: frozenset[str] = frozenset()) -> list[FoldOutcome]:
    """:func:`fit_row` of single-modality, ensemble or stacking rows on one fold from its block models ``bases``
    (block name -> :func:`fit_block` on the fold), or without them from the blocks fitted here (with their
    out-of-fold probabilities for those in ``out_of_fold``)."""
    if bases is None:
        names = dict.fromkeys(name for row in rows for name in row.blocks)
        bases = {name: fit_block(name, fold, features, config, name in out_of_fold) for name in names}
    return [fit_row(row, fold, features, config, keep_model, {name: bases[name] for name in row.blocks})
            for row in rows]


def _fold_name(fold: Fold | None) -> str:
    return "all" if fold is None else fold.name


def _write_results(rows, skipped, outcomes, folds, features, config, results_dir) -> tuple[pd.DataFrame, dict]:
    """predictions.csv, the result tables and plots, comparisons.csv, skipped_rows.csv and config_used.yaml; returns
    the predictions and the tables."""
    results_dir.mkdir(parents=True, exist_ok=True)
    evaluated = [outcome for outcome in outcomes if outcome.fold != "all"]
    predictions = pd.concat([outcome.predictions for outcome in evaluated], ignore_index=True)
    write_csv(predictions[PREDICTION_COLUMNS], results_dir / "predictions.csv")
    pooled = _pooled_by_method(predictions)
    loop = None if config.protocol == "holdout" else _outer_loop(config, folds)
    tables = _write_tables(rows, predictions, pooled, config, loop, results_dir, patient_groups(features.groups))
    write_csv(comparison_table(rows, config.comparisons, pooled, predictions, loop[0] if loop else None),
              results_dir / "comparisons.csv")
    write_csv(pd.DataFrame([vars(row) for row in skipped], columns=["family", "method", "reason"]),
              results_dir / "skipped_rows.csv")
    write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), results_dir / "config_used.yaml")
    return predictions, tables


def _write_tables(rows, predictions, pooled, config, loop, results_dir, groups) -> dict[str, pd.DataFrame]:
    """``loop``: (outer folds, repeats) of a cross-validated protocol, None under the hold-out."""
    from mmdlr.analysis.plots import plot_calibration, plot_roc  # matplotlib: not in the grid's worker processes

    summaries = {}
    for (family, method), frame in predictions.groupby(["family", "method"], sort=False):
        if loop is None:
            summaries[(family, method)] = holdout_row(frame, config.bootstrap.n, config.bootstrap.seed, groups)
        else:
            summaries[(family, method)] = nested_row(frame, *loop, config.bootstrap.n, config.bootstrap.seed, groups)
    tables = {}
    for family in dict.fromkeys(row.family for row in rows):
        family_rows = [row for row in rows if row.family == family]
        table = result_table(family_rows, summaries)
        name = TABLE_NAMES[family]
        write_csv(table, results_dir / f"table_{name}.csv")
        with atomic_path(results_dir / f"table_{name}.md") as temp:
            temp.write_text(markdown_table(table, TABLE_TITLES[family]), encoding="utf-8")
        plot_roc(pooled[pooled["family"] == family], [(row.method, row.kind) for row in family_rows],
                 TABLE_TITLES[family].split(" (")[0], results_dir / f"roc_{name}.png",
                 "test AUC" if loop is None else "pooled OOF AUC")
        tables[family] = table
    shown = shown_models(rows, config.comparisons)
    write_csv(pd.DataFrame(shown, columns=["family", "method"]), results_dir / "shown_models.csv")
    plot_calibration(predictions, shown, results_dir / "calibration.png", groups)
    return tables


def _pooled_by_method(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per (family, method) and patient: the probability averaged over the folds that tested the patient."""
    return pd.concat([pooled_predictions(frame).assign(family=family, method=method)
                      for (family, method), frame in predictions.groupby(["family", "method"], sort=False)],
                     ignore_index=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _bundles(outcomes: list[FoldOutcome], features: FeatureSet, config: AnalysisConfig) -> list[ModelBundle]:
    """The kept models of ``outcomes`` with what serving them needs."""
    trained_on = "hold-out training split" if config.protocol == "holdout" else "all patients"
    bundles = []
    for outcome in outcomes:
        row = outcome.row
        complete_only = row.kind in (SINGLE, EARLY, COMBINED) and config.fusion.missing == "complete"
        bundles.append(ModelBundle(outcome.model, row.family, row.method, outcome.classifier, outcome.threshold,
                                   {name: features.blocks[name] for name in row.blocks},
                                   f"{trained_on} (n={outcome.n_train})", requires_all_blocks=complete_only))
    return bundles


def _chunks(items: list, parts: int) -> list[list]:
    """``items`` in at most ``parts`` (at least one) consecutive lists of equal length, the last one shorter."""
    size = max(1, -(-len(items) // max(1, parts)))
    return [items[start:start + size] for start in range(0, len(items), size)]


def _model_files(bundles: list[ModelBundle]) -> list[bytes]:
    """Each bundle's :func:`model_file_bytes` (a worker's task)."""
    return [model_file_bytes(bundle) for bundle in bundles]


def _write_models(bundles: list[ModelBundle], files: Iterable[bytes], models_dir: Path) -> None:
    """Each bundle's skops file (its :func:`model_file_bytes` in ``files``) and ``index.csv``."""
    index = []
    for bundle, data in zip(bundles, files, strict=True):
        path = models_dir / TABLE_NAMES[bundle.family] / f"{_slug(bundle.method)}{MODEL_SUFFIX}"
        write_bytes(data, path)
        index.append({"family": bundle.family, "method": bundle.method, "classifier": bundle.classifier,
                      "threshold": bundle.threshold, "trained_on": bundle.trained_on,
                      "n_features": len(bundle.feature_columns), "path": str(path.relative_to(models_dir))})
    write_csv(pd.DataFrame(index), models_dir / "index.csv")


def _write_center_table(predictions: pd.DataFrame, results_dir: Path) -> None:
    """``table_centers.csv``: every model's metrics on each centre as the test set (leave-centre-out); AUC NaN
    where a centre has one class."""
    rows = [{"family": family, "method": method, "center": fold.removeprefix("center_"), "n_patients": len(frame),
             **binary_metrics(frame["label"], frame["probability"], float(frame["threshold"].iloc[0]))}
            for (family, method, fold), frame in predictions.groupby(["family", "method", "fold"], sort=False)]
    write_csv(pd.DataFrame(rows), results_dir / "table_centers.csv")


def _write_clinical(manifest: Manifest, folds: list[Fold], config: AnalysisConfig, results_dir: Path) -> None:
    if config.protocol != "holdout":
        log.info("table_clinical.csv is written for the hold-out protocol only (train vs test)")
        return
    table = clinical_table(manifest, folds[0])
    if table is None:
        log.info("manifest has no clinical columns; no table_clinical.csv")
        return
    write_csv(table, results_dir / "table_clinical.csv")
