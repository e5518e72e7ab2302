"""`report.html`: one self-contained page (images embedded) describing a run and its results."""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import yaml
from matplotlib.figure import Figure

from mmdlr import __version__
from mmdlr.analysis.bundle import load_bundle
from mmdlr.analysis.summary import _ci_text
from mmdlr.atomic import write_text
from mmdlr.evaluate.decision_curve import decision_curve
from mmdlr.io.manifest import Manifest
from mmdlr.pipeline.config import RunConfig
from mmdlr.pipeline.run import IN_SAMPLE, OUT_OF_FOLD, TEST_SPLIT
from mmdlr.pipeline.provenance import package_versions
from mmdlr.report.protocol import cohort_counts, protocol_items

TABLES = (("radiomics", "Table 2 — conventional radiomic features"),
          ("deep", "Table 3 — deep features from transfer learning"),
          ("fusion", "Table 4 — radiomic + deep feature fusion"))
TABLE_COLUMNS = ["method", "n_patients", "Accuracy [95% CI]", "AUC [95% CI]", "Pooled OOF AUC [95% CI]",
                 "Sensitivity [95% CI]", "Specificity [95% CI]", "Brier [95% CI]", "Calibration intercept [95% CI]",
                 "Calibration slope [95% CI]", "classifier", "ci_note"]
# The AUC of the ROC legends is the column of this name (nested CV: pooled out-of-fold; hold-out: test set).
AUC_COLUMNS = {"holdout": {"AUC [95% CI]": "Test AUC [95% CI]"},
               "nested_cv": {"AUC [95% CI]": "Fold-mean AUC [95% CI]"}}
ROC_CAPTIONS = {"holdout": "ROC of the test-set predictions; legend: test AUC, as in the tables",
                "nested_cv": ("ROC of each patient's out-of-fold probability averaged over repeats; legend: "
                              "pooled OOF AUC, as in the tables' Pooled OOF AUC column (not the fold mean)")}
COMPARISONS_NOTE = (
    "Pre-specified: the pairs listed in the config's `comparisons`, fixed before the test data were seen "
    "(confirmatory). Exploratory: every other fusion vs single-modality pair, for hypothesis generation only. "
    "DeLong's paired test (DeLong et al. 1988) on the pooled test predictions; under nested CV also the paired "
    "fold-wise AUC difference with the Nadeau-Bengio corrected resampled t (Nadeau & Bengio 2003). p-values are "
    "Holm-adjusted within each kind (Holm 1979).")
STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;line-height:1.45}
h1{border-bottom:3px solid #2a6f97}h2{color:#2a6f97;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}th,td{border:1px solid #ccc;padding:3px 8px}
th{background:#eef4f8}td{text-align:right}td:first-child{text-align:left}
figure{display:inline-block;margin:.4em;vertical-align:top;text-align:center}figcaption{font-size:.85em}
img{max-width:520px}.cam img{max-width:180px;image-rendering:pixelated}.note{color:#555;font-size:.9em}
dl dt{font-weight:600;margin-top:.4em}
"""


def _image(data: bytes, alt: str, caption: str = "", css: str = "") -> str:
    encoded = base64.b64encode(data).decode()
    return (f'<figure class="{css}"><img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(frame: pd.DataFrame, float_format: str = "{:.3f}") -> str:
    return frame.to_html(index=False, border=0, na_rep="–", float_format=float_format.format, escape=True)


def _read(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path, keep_default_na=False, na_values=[""]) if path.is_file() else None


def _cohort_section(out: Path, config: RunConfig, source: Manifest) -> str:
    parts = [f"<p>Manifest: <code>{html.escape(str(source.path))}</code>; "
             f"{html.escape(cohort_counts(config, source))}.</p>"]
    summary = _read(out / "cohort_summary.csv")
    if summary is not None:
        parts.append(_table(summary, "{:.0f}"))
    present = pd.DataFrame({m: source.table[f"{m}_image"] != "" for m in source.modalities})
    combos = present.apply(lambda row: "+".join(m.upper() for m in present.columns if row[m]), axis=1)
    unit = f"{config.report.unit}s"
    parts.append(f"<p>Modalities present per {config.report.unit}:</p>"
                 + _table(combos.value_counts().rename_axis("modalities").reset_index(name=unit)))
    removed = source.path.with_name(f"{source.path.stem}_removed.csv")
    if removed.is_file():
        reasons = pd.read_csv(removed)["reason"].value_counts().rename_axis("reason").reset_index(name="images")
        parts.append(f"<p>Removed before this run (<code>{html.escape(removed.name)}</code>):</p>" + _table(reasons))
    else:
        parts.append("<p>No duplicates were removed before this run (no <code>*_removed.csv</code> "
                     "beside the manifest).</p>")
    return "".join(parts)


def _result_table(table: pd.DataFrame, protocol: str) -> str:
    """A result table's shown columns; the AUC columns named by what they hold (see ``AUC_COLUMNS``)."""
    if "pooled_auc" in table:
        table = table.assign(**{"Pooled OOF AUC [95% CI]": [
            _ci_text(*values) for values in table[["pooled_auc", "pooled_auc_low", "pooled_auc_high"]].to_numpy()]})
    shown = table[[c for c in TABLE_COLUMNS + ["weights"] if c in table]]
    return _table(shown.rename(columns=AUC_COLUMNS[protocol]))


def _results_section(results: Path, protocol: str) -> str:
    parts = []
    clinical = _read(results / "table_clinical.csv")
    if clinical is not None:
        parts.append("<h3>Table 1 — characteristics, training vs test</h3>" + _table(clinical))
    for name, title in TABLES:
        table = _read(results / f"table_{name}.csv")
        if table is None:
            parts.append(f"<h3>{title}</h3><p class='note'>Not computed (its feature tables are absent).</p>")
            continue
        note = table["ci_method"].iloc[0] if "ci_method" in table else ""
        parts.append(f"<h3>{title}</h3>" + _result_table(table, protocol)
                     + f"<p class='note'>{html.escape(str(note))}</p>")
    baselines = results / "table_cnn_baselines.csv"
    if baselines.is_file():
        table = _read(baselines)
        note = (results / "table_cnn_baselines.md").read_text().strip().splitlines()[-1]
        parts.append("<h3>CNN baselines (softmax head, same split)</h3>"
                     + (_result_table(table, "holdout") if len(table) else "")
                     + f"<p class='note'>{html.escape(note)}</p>")
    comparisons = _read(results / "comparisons.csv")
    if comparisons is not None and len(comparisons):
        parts.append("<h3>Model comparisons</h3>" + _table(comparisons, "{:.4f}")
                     + f"<p class='note'>{html.escape(COMPARISONS_NOTE)}</p>")
    skipped = _read(results / "skipped_rows.csv")
    if skipped is not None and len(skipped):
        parts.append("<h3>Rows not computed</h3>" + _table(skipped))
    return "".join(parts)


def _decision_curve_png(results: Path) -> bytes | None:
    predictions = _read(results / "predictions.csv")
    shown = _read(results / "shown_models.csv")
    if predictions is None or shown is None:
        return None
    figure = Figure(figsize=(6, 4.2))
    axis = figure.subplots()
    curve = None
    for family, method in shown[["family", "method"]].itertuples(index=False):
        chosen = predictions[(predictions["family"] == family) & (predictions["method"] == method)]
        if chosen["label"].nunique() < 2:
            continue
        pooled = chosen.groupby("patient_id").agg(label=("label", "first"), probability=("probability", "mean"))
        curve = decision_curve(pooled["label"], pooled["probability"])
        axis.plot(curve["threshold"], curve["model"], label=f"{family}: {method}")
    if curve is None:
        return None
    axis.plot(curve["threshold"], curve["treat_all"], "k--", label="treat all")
    axis.plot(curve["threshold"], curve["treat_none"], "k:", label="treat none")
    axis.set(xlabel="threshold probability", ylabel="net benefit", title="Decision curves (models fixed before testing)",
             ylim=(-0.1, max(0.05, curve["treat_all"].max()) * 1.15))
    axis.legend(fontsize=8)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _figures_section(results: Path, protocol: str) -> str:
    rocs = [results / f"roc_{name}.png" for name, _ in TABLES]
    figures = [_image(p.read_bytes(), p.stem, p.stem.replace("_", " ")) for p in rocs if p.is_file()]
    if figures:
        figures.append(f"<p class='note'>{html.escape(ROC_CAPTIONS[protocol])}.</p>")
    if (results / "calibration.png").is_file():
        figures.append(_image((results / "calibration.png").read_bytes(), "calibration", "calibration"))
    curve = _decision_curve_png(results)
    if curve:
        figures.append(_image(curve, "decision curve", "decision curve analysis"))
    return "".join(figures) or "<p class='note'>No figures (the analysis did not run).</p>"


GRADCAM_NOTES = {
    TEST_SPLIT: "Cases chosen and judged (p) by the network's head on the test split, out of sample; the heat maps "
                "are of that network, trained on the training split.",
    OUT_OF_FOLD: "Cases chosen and judged (p) by the out-of-fold probability of the analysis's deep single-modality "
                 "model; the heat maps and p_head are of the network whose head was trained on all patients, these "
                 "included (in-sample).",
    IN_SAMPLE: "In-sample: cases chosen and judged by the head of the network that was trained on them; not test "
               "results.",
}


def _gradcam_section(out: Path) -> str:
    parts = []
    for cases_file in sorted((out / "gradcam").glob("*/cases.csv")):
        modality = cases_file.parent.name
        cases = pd.read_csv(cases_file, keep_default_na=False, dtype={"patient_id": str})
        figures = []
        for case in cases.itertuples():
            png = cases_file.parent / f"{case.patient_id}_gradcam.png"
            if png.parent == cases_file.parent and png.is_file():  # an id naming another folder is not shown
                verdict = "correct" if str(case.correct) == "True" else "wrong"
                label = "malignant" if int(case.label) else "benign"
                head = ("" if case.probability == case.head_prob_malignant
                        else f", p_head={case.head_prob_malignant:.2f}")
                figures.append(_image(png.read_bytes(), f"Grad-CAM {case.patient_id}",
                                      f"{case.patient_id}: {label}, p={case.probability:.2f} ({verdict}){head}", "cam"))
        notes = "".join(f"<p class='note'>{html.escape(GRADCAM_NOTES[source])}</p>"
                        for source in dict.fromkeys(cases["probability_source"]))
        parts.append(f"<h3>{html.escape(modality.upper())}</h3>" + notes + "".join(figures))
    return "".join(parts) or "<p class='note'>No Grad-CAM overlays (deep stage disabled).</p>"


def selected_radiomic_features(models_dir: Path, index: pd.DataFrame) -> pd.DataFrame:
    """Features each single-modality radiomics model kept after Mann–Whitney → Spearman → LASSO."""
    rows = []
    for entry in index[(index["family"] == "radiomics") & ~index["method"].str.contains(r"\+|Ensemble|Stacking")
                       ].itertuples():
        model = load_bundle(models_dir / entry.path).model
        steps = model.best_estimator_[:-1]
        names = [name.split("__")[-1] for name in steps.get_feature_names_out()]
        rows.append({"modality": entry.method, "classifier": entry.classifier, "kept": len(names),
                     "features": ", ".join(names)})
    return pd.DataFrame(rows)


def _models_section(results: Path) -> str:
    index = _read(results / "models" / "index.csv")
    if index is None:
        return "<p class='note'>No saved models.</p>"
    parts = [_table(index.drop(columns=["path"], errors="ignore"))]
    selected = selected_radiomic_features(results / "models", index)
    if len(selected):
        parts.append("<h3>Radiomic features kept by Mann–Whitney → Spearman → LASSO (final models)</h3>"
                     + _table(selected))
    return "".join(parts)


def render_report(out_dir: str | Path, config: RunConfig, source: Manifest) -> str:
    """The report's HTML text for a run folder."""
    out = Path(out_dir)
    results = out / "results"
    protocol = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>"
                       for k, v in protocol_items(config, source).items())
    versions = pd.DataFrame(sorted(package_versions().items()), columns=["package", "version"])
    sections = [
        ("Cohort", _cohort_section(out, config, source)),
        ("Protocol (TRIPOD+AI items)", f"<dl>{protocol}</dl>"),
        ("Results", _results_section(results, config.analysis.protocol)),
        ("ROC, calibration and decision curves", _figures_section(results, config.analysis.protocol)),
        ("Grad-CAM: the most confident correct and wrong cases", _gradcam_section(out)),
        ("Selected features and classifiers", _models_section(results)),
        ("Software", _table(versions) + "<details><summary>Resolved configuration</summary><pre>"
         + html.escape(yaml.safe_dump(config.raw, sort_keys=False)) + "</pre></details>"),
    ]
    body = "".join(f"<h2>{html.escape(title)}</h2>{content}" for title, content in sections)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>mmdlr report</title>"
            f"<style>{STYLE}</style></head><body><h1>mmdlr report</h1><p class='note'>mmdlr {__version__}, "
            f"{created}, run folder <code>{html.escape(str(out))}</code>. Method: Lu et al. 2024, Front. Med. "
            f"11:1402967, run without leakage (every fitted step inside the folds).</p>{body}</body></html>")


def write_report(out_dir: str | Path, config: RunConfig, source: Manifest) -> Path:
    """Write ``OUT/report.html`` atomically and return its path."""
    return write_text(render_report(out_dir, config, source), Path(out_dir) / "report.html")
