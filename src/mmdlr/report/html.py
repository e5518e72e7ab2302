"""`report.html`: one self-contained page (images embedded) describing a run and its results, laid out like the
paper's Tables 1–4 and Figures 6–8: numbered tables and figures with captions, readable in a browser at
1400 px and printed to PDF (print stylesheet), with a TRIPOD+AI checklist and a model card."""

from __future__ import annotations

import base64
import html
import io
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure
from PIL import Image

from mmdlr import __version__
from mmdlr.analysis.bundle import load_bundle
from mmdlr.analysis.grid import TABLE_NAMES
from mmdlr.analysis.plots import DECISION_THRESHOLDS, decision_curve_figure
from mmdlr.atomic import write_text
from mmdlr.deep.backbones import get_backbone
from mmdlr.deep.gradcam import ROI_ARRAYS, gradcam_figure, heat_inside
from mmdlr.io.manifest import Manifest
from mmdlr.pipeline.config import RunConfig
from mmdlr.pipeline.provenance import package_versions
from mmdlr.pipeline.run import IN_SAMPLE, OUT_OF_FOLD, TEST_SPLIT
from mmdlr.radiomics.robustness import ICC_TABLE, ROBUSTNESS_DIR, icc_figure
from mmdlr.report.protocol import cohort_counts, protocol_items

FAMILIES = {"radiomics": "conventional radiomic features", "deep": "deep features from transfer learning",
            "radiomics+deep": "radiomic + deep feature fusion", "baselines": "CNN baselines"}
PAPER_TABLES = {"radiomics": 2, "deep": 3, "radiomics+deep": 4}
# The AUC column's name says what it holds (nested CV: the mean of the outer folds; hold-out: the test set);
# the ROC legends show the test AUC (hold-out) or the pooled out-of-fold AUC (nested CV).
AUC_NAMES = {"holdout": "Test AUC [95% CI]", "nested_cv": "Fold-mean AUC [95% CI]",
             "leave_center_out": "Center-mean AUC [95% CI]"}
POOLED_AUC = "Pooled OOF AUC [95% CI]"
METRICS = {"accuracy": "Accuracy [95% CI]", "auc": "AUC [95% CI]", "sensitivity": "Sensitivity [95% CI]",
           "specificity": "Specificity [95% CI]"}
CALIBRATION = {"brier": "Brier score [95% CI]", "cal_intercept": "Calibration intercept [95% CI]",
               "cal_slope": "Calibration slope [95% CI]"}
# Readable names (with units) of clinical manifest columns; others: underscores to spaces, unit suffixes
# (_mm, _years, ...) to "(unit)".
CLINICAL_NAMES = {"pathology": "Pathology", "age": "Age (years)", "diameter_mm": "Diameter (mm)",
                  "ca153": "CA 15-3 (U/mL)", "birads": "BI-RADS category", "menopause": "Menopausal status"}
UNITS = {"mm": "mm", "cm": "cm", "years": "years", "yr": "years", "ml": "mL", "kg": "kg", "pct": "%",
         "percent": "%", "days": "days", "months": "months"}
HEADERS = {"comparison": "Comparison", "kind": "Kind", "n_patients": "n", "auc_a": "AUC A", "auc_b": "AUC B",
           "delong_z": "DeLong z", "delong_p": "DeLong p", "delong_p_holm": "DeLong p (Holm)", "n_folds": "Folds",
           "fold_auc_difference": "Fold AUC difference", "fold_difference_low": "95% CI low",
           "fold_difference_high": "95% CI high", "corrected_t_p": "Corrected t p",
           "corrected_t_p_holm": "Corrected t p (Holm)", "note": "Note", "family": "Feature set",
           "method": "Method", "classifier": "Classifier", "threshold": "Threshold", "trained_on": "Trained on",
           "n_features": "Features", "modality": "Modality", "kept": "Kept", "features": "Features kept",
           "reason": "Reason", "images": "Images"}
COMPARISONS_NOTE = (
    "Pre-specified: the pairs listed in the config's <code>comparisons</code>, fixed before the test data were "
    "seen (confirmatory). Exploratory: every other fusion vs single-modality pair, for hypothesis generation "
    "only. DeLong's paired test (DeLong et al. 1988) on the pooled test predictions; under nested CV also the "
    "paired fold-wise AUC difference with the Nadeau–Bengio corrected resampled t (Nadeau &amp; Bengio 2003). "
    "p-values are Holm-adjusted within each kind (Holm 1979).")
GRADCAM_NOTES = {
    TEST_SPLIT: "Cases chosen and judged (p) by the network's head on the test split, out of sample; the heat maps "
                "are of that network, trained on the training split.",
    OUT_OF_FOLD: "Cases chosen and judged (p) by the out-of-fold probability of the analysis's deep single-modality "
                 "model; the heat maps and p_head are of the network whose head was trained on all patients, these "
                 "included (in-sample).",
    IN_SAMPLE: "In-sample: cases chosen and judged by the head of the network that was trained on them; not test "
               "results.",
}
CAM_STRIDE = 32  # the last convolutional block's grid is this many times coarser than the input (VGG-19: 16)


def gradcam_reading(spatial_size: list[int]) -> str:
    """How to read the heat maps of a run whose networks take ``spatial_size`` ([height, width]) inputs."""
    height, width = spatial_size
    rows, columns = -(-height // CAM_STRIDE), -(-width // CAM_STRIDE)
    coarse = (f" A {rows} × {columns} grid is too coarse to place heat within a lesion (each cell spans a third of "
              "the ROI or more; on a 2 × 2 grid the peak always touches the border): set deep.spatial_size to 224 "
              "or more for maps worth reading." if min(rows, columns) < 4 else "")
    return ("Grad-CAM (Selvaraju et al. 2017) weights the last convolutional block's activation maps by the "
            f"gradient of the predicted class. That block sees the {height} × {width} px network input on a grid "
            f"about {CAM_STRIDE} times coarser ({rows} × {columns} cells), upsampled bilinearly to the ROI, so the "
            "map shows which part of the ROI drove the decision, not lesion detail. Heat on the crop's edge is "
            "mostly the network's response to the edge of its input (zero padding of its convolutions), not to the "
            "tissue there: padding the ROI moves that heat to the new edge. Each map is scaled to its own 0–1 "
            "range, so colours compare places within one case, not cases; the share of heat inside the lesion, "
            f"beside the lesion's share of the ROI, says whether the map singles out the lesion at all.{coarse}")


GRADCAM_DPI = 110
NOT_NUMBERS = ("", "–", "n/a", "not estimable")  # cells a numeric column may also hold
UNSTABLE = 1000  # an estimate beyond it (calibration of near-separated predictions) is shown as not estimable
NUMBER = re.compile(r"^[<>≤≥]?\s*[-−+]?\d[\d.]*(?:%|\s|\)|$)")
STYLE = """
:root{--accent:#2a6f97;--rule:#c9d3dc}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1320px;margin:1.5em auto;padding:0 1.5em;
 color:#1f2328;line-height:1.45;font-size:15px}
h1{font-size:1.6em;border-bottom:3px solid var(--accent);padding-bottom:.2em}
h2{color:var(--accent);margin-top:1.8em;border-bottom:1px solid var(--rule)}h3{margin:1.2em 0 .3em}
nav{font-size:.9em;columns:3;background:#f4f7f9;padding:.6em 1em;border-radius:4px}nav a{display:block}
.tablewrap{margin:1em 0 1.4em;overflow-x:auto}
table{border-collapse:collapse;font-size:.9em}caption{caption-side:top;text-align:left;padding:.3em 0;
 font-size:1.02em}
th,td{padding:3px 9px;vertical-align:top;text-align:left}thead th{border-top:2px solid #333;
 border-bottom:1px solid #333;background:#f4f7f9}tbody tr:last-child td{border-bottom:2px solid #333}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}td.num{white-space:nowrap}
tr.level td:first-child{padding-left:2em}tr.group td{border-top:1px solid var(--rule)}
sup{line-height:0}
.note{color:#4a5560;font-size:.86em;margin:.25em 0;max-width:1100px}
figure{margin:1em 0 1.6em}figure img{display:block;max-width:100%;height:auto;width:calc(var(--width) * 1px)}
figcaption{font-size:.92em;max-width:1100px;margin-top:.3em}
.cams{display:flex;flex-wrap:wrap;gap:.8em 1.6em}.cam{margin:0;max-width:100%;width:calc(var(--width) * 1px)}
.cam img{width:100%}
.cam figcaption{font-size:.85em}
dl.card dt,dl.protocol dt{font-weight:600;margin-top:.5em}dl.card dd,dl.protocol dd{margin-left:1.5em;max-width:1100px}
code{font-size:.9em}.versions{font-size:.82em;color:#4a5560}
@media print{
 @page{size:A4;margin:14mm 12mm}
 body{max-width:none;margin:0;padding:0;font-size:9.5pt}nav,details{display:none}
 h2,h3,caption{break-after:avoid}#sec-results,#sec-figures,#sec-gradcam,#sec-tripod{break-before:page}
 table,figure,tr{break-inside:avoid}.tablewrap{overflow:visible}table{font-size:8pt}
 th,td{padding:2px 5px}figure img,.cam{width:calc(var(--width) / 1270 * 100%)}.cam img{width:100%}
 .cams{gap:.5em 3%}figure.camset{break-inside:auto}a{color:inherit;
 text-decoration:none}
}
"""


class Raw(str):
    """Text already written as HTML (escaped where it holds data)."""


def _cell(value: object) -> str:
    return value if isinstance(value, Raw) else html.escape(str(value))


def _plain(value: object) -> str:
    return re.sub(r"<[^>]+>", "", str(value))


def _is_number(value: object) -> bool:
    return bool(NUMBER.match(_plain(value)))


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _html_table(header: list[str], rows: list[list[object]], row_classes: list[str] | None = None) -> str:
    """Head and body of a table; a column whose filled cells are all numbers is right-aligned and unbroken."""
    numeric = [any(_is_number(row[i]) for row in rows)
               and all(_is_number(row[i]) or _plain(row[i]) in NOT_NUMBERS for row in rows)
               for i in range(len(header))]
    css = [" class='num'" if flag else "" for flag in numeric]
    head = "".join(f"<th{css[i]}>{_cell(name)}</th>" for i, name in enumerate(header))
    classes = row_classes or [""] * len(rows)
    body = "".join(f"<tr class='{kind}'>" + "".join(f"<td{css[i]}>{_cell(value)}</td>" for i, value in enumerate(row))
                   + "</tr>" for row, kind in zip(rows, classes))
    return f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody>"


def _frame_rows(frame: pd.DataFrame) -> tuple[list[str], list[list[object]]]:
    """A frame's readable header (``HEADERS``) and its cells as text (3 decimals, p-values as <0.001)."""
    header = [HEADERS.get(column, column) for column in frame.columns]
    rows = [[_number(value, column.endswith(("_p", "_holm"))) for column, value in zip(frame.columns, record)]
            for record in frame.itertuples(index=False)]
    return header, rows


def _number(value: object, p_value: bool = False) -> str:
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        return _p_text(value) if p_value else f"{value:.3f}".replace("-", "−")
    return str(value)


def _p_text(value: float) -> str:
    return "" if value is None or math.isnan(value) else ("<0.001" if value < 0.001 else f"{value:.3f}")


def _ci(value: float, low: float, high: float) -> str:
    """'0.812 [0.693-0.929]' as in the paper; '−0.34 [−1.97, 1.30]' where a bound is negative; 'n/a'."""
    if value is None or math.isnan(value):
        return "n/a"
    if abs(value) > UNSTABLE:
        return "not estimable"
    if math.isnan(low):
        return f"{value:.3f}".replace("-", "−")
    if min(value, low) < 0:
        return f"{value:.3f} [{low:.3f}, {high:.3f}]".replace("-", "−")
    return f"{value:.3f} [{low:.3f}-{high:.3f}]"


def clinical_label(name: str) -> str:
    """A clinical column's readable name with its unit: ``diameter_mm`` -> 'Diameter (mm)'."""
    if name.lower() in CLINICAL_NAMES:
        return CLINICAL_NAMES[name.lower()]
    words = name.split("_")
    unit = UNITS.get(words[-1].lower()) if len(words) > 1 else None
    text = " ".join(words[:-1] if unit else words)
    return _sentence(text) + (f" ({unit})" if unit else "")


@dataclass
class Numbering:
    """Tables and figures numbered in order of appearance; ``keys`` maps each one's key to its label."""

    tables: int = 0
    figures: int = 0
    keys: dict[str, str] = field(default_factory=dict)

    def table(self, key: str, caption: str, body: str, notes: list[str] = ()) -> str:
        """A numbered table; ``caption`` and ``notes`` are HTML."""
        self.tables += 1
        self.keys[key] = label = f"Table {self.tables}"
        notes_html = "".join(f"<p class='note'>{note}</p>" for note in notes)
        return (f"<div class='tablewrap' id='{key}'><table><caption><b>{label}.</b> {caption}</caption>{body}"
                f"</table>{notes_html}</div>")

    def figure(self, key: str, content: str, caption: str, css: str = "") -> str:
        """A numbered figure; ``content`` and ``caption`` are HTML."""
        self.figures += 1
        self.keys[key] = label = f"Figure {self.figures}"
        return (f"<figure id='{key}' class='{css}'>{content}<figcaption><b>{label}.</b> {caption}</figcaption>"
                "</figure>")

    def link(self, key: str) -> str | None:
        return f"<a href='#{key}'>{self.keys[key]}</a>" if key in self.keys else None


def _png(figure: Figure, dpi: int = 150) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _css_width(data: bytes, dpi: int) -> int:
    """CSS pixels of a PNG drawn at ``dpi``: its matplotlib inches at 96 px each."""
    return round(Image.open(io.BytesIO(data)).size[0] * 96 / dpi)


def _img(data: bytes, alt: str, dpi: int = 150) -> str:
    """An embedded PNG shown at its size for ``dpi``, never wider than the page."""
    width = _css_width(data, dpi)
    return (f"<img alt='{html.escape(alt)}' style='--width:{width}' "
            f"src='data:image/png;base64,{base64.b64encode(data).decode()}'>")


def _read(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path, keep_default_na=False, na_values=[""]) if path.is_file() else None


@dataclass
class RunFacts:
    """What the captions say about a run: protocol, unit, split sizes and test patients per family."""

    protocol: str
    unit: str
    repeats: int
    outer_folds: int
    split_sizes: dict[str, int]
    tested: dict[str, int]

    def design(self) -> str:
        """'5-fold nested cross-validation, 3 repeats' or 'leave-center-out over 3 centers'."""
        if self.protocol == "leave_center_out":
            return f"leave-center-out over {self.outer_folds} centers"
        return (f"{self.outer_folds}-fold nested cross-validation, {self.repeats} repeat"
                f"{'s' if self.repeats != 1 else ''}")

    def units(self, n: int) -> str:
        return f"{n} {self.unit}{'' if n == 1 else 's'}"

    def evaluated_on(self, family: str | None = None) -> str:
        """'the 8 test patients (hold-out)' or 'out of fold, 40 patients (5-fold nested CV, 3 repeats)'."""
        n = self.tested.get(family) if family else max(self.tested.values(), default=0)
        if self.protocol == "holdout":
            return f"the {self.units(n or 0)} of the hold-out test split"
        if self.protocol == "leave_center_out":
            return f"{self.units(n or 0)}, each tested by models trained on the other centers ({self.design()})"
        return (f"{self.units(n or 0)} out of fold ({self.outer_folds}-fold nested CV, {self.repeats} repeat"
                f"{'s' if self.repeats != 1 else ''})")


def _run_facts(out: Path, config: RunConfig) -> RunFacts:
    manifest = _read(out / "manifest.csv")
    splits = (manifest["split"].fillna("").value_counts().to_dict()
              if manifest is not None and "split" in manifest else {})
    predictions = _read(out / "results" / "predictions.csv")
    tested = ({} if predictions is None else
              predictions.groupby("family")["patient_id"].nunique().to_dict())
    nested = config.analysis.nested_cv
    if config.analysis.protocol == "leave_center_out":  # one fold per center, each tested once
        centers = 0 if predictions is None else predictions["fold"].nunique()
        return RunFacts(config.analysis.protocol, config.report.unit, 1, centers, splits, tested)
    return RunFacts(config.analysis.protocol, config.report.unit, nested.repeats, nested.outer_folds, splits, tested)


def _cohort_section(out: Path, config: RunConfig, source: Manifest, numbers: Numbering, facts: RunFacts) -> str:
    parts = [f"<p>Manifest <code>{html.escape(str(source.path))}</code>: "
             f"{html.escape(cohort_counts(config, source))}.</p>"]
    clinical = _read(out / "results" / "table_clinical.csv")
    if clinical is not None and len(clinical):
        parts.append(_clinical_table(clinical, numbers, facts))
    summary = _read(out / "cohort_summary.csv")
    present = pd.DataFrame({m: source.table[f"{m}_image"] != "" for m in source.modalities})
    combos = present.apply(lambda row: " + ".join(m.upper() for m in present.columns if row[m]), axis=1)
    if summary is not None:
        rows = [[str(r.modality).upper(), r.patients, r.benign, r.malignant, r.missing, r.dimensions]
                for r in summary.itertuples()]
        header = ["Modality", f"{facts.unit.title()}s", "Benign", "Malignant", "Missing", "Image"]
        parts.append(numbers.table("tab-modalities", f"Images per modality (all {facts.unit}s, before splitting).",
                                   _html_table(header, rows), [
            "Modalities per " + html.escape(config.report.unit) + ": " + html.escape(
                "; ".join(f"{name or 'none'} {count}" for name, count in combos.value_counts().items())) + "."]))
    removed = source.path.with_name(f"{source.path.stem}_removed.csv")
    if removed.is_file():
        reasons = pd.read_csv(removed)["reason"].value_counts()
        parts.append(f"<p class='note'>Removed before this run (<code>{html.escape(removed.name)}</code>): "
                     + html.escape("; ".join(f"{reason}: {count}" for reason, count in reasons.items())) + ".</p>")
    else:
        parts.append("<p class='note'>No duplicates were removed before this run (no <code>*_removed.csv</code> "
                     "beside the manifest).</p>")
    return "".join(parts)


def _clinical_table(table: pd.DataFrame, numbers: Numbering, facts: RunFacts) -> str:
    """The paper's Table 1: each variable on one row (its test), its levels indented below it."""
    rows, classes = [], []
    has_mann_whitney = table["p_mannwhitney"].notna().any()
    for variable, group in table.groupby("variable", sort=False):
        for record in group.itertuples():
            level = str(record.level) if isinstance(record.level, str) else ""
            if level:
                name = "Missing" if level == "(missing)" else level[:1].upper() + level[1:]
                rows.append([name, record.train, record.test, "", ""] + ([""] if has_mann_whitney else []))
                classes.append("level")
                continue
            symbol = {"t-test": "t", "chi-square": "χ²"}.get(record.test_used, record.test_used)
            statistic = "" if math.isnan(record.statistic) else f"{symbol} = {record.statistic:.2f}".replace("-", "−")
            rows.append([clinical_label(variable), record.train if isinstance(record.train, str) else "",
                         record.test if isinstance(record.test, str) else "", statistic, _p_text(record.p_value)]
                        + ([_p_text(record.p_mannwhitney)] if has_mann_whitney else []))
            classes.append("group")
    header = ["Characteristic", f"Training (n = {facts.split_sizes.get('train', '?')})",
              f"Test (n = {facts.split_sizes.get('test', '?')})", "Statistic", "p"] + (
        ["p (Mann–Whitney)"] if has_mann_whitney else [])
    return numbers.table("tab-clinical", f"Characteristics of the training and test {facts.unit}s (hold-out split).",
                         _html_table(header, rows, classes),
                         ["Continuous: mean ± SD, Student's t-test (Mann–Whitney U p beside it); categorical: n (%),"
                          " χ² test. Missing values are left out of the tests and counted on a Missing line."])


def _note_marks(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Each row's footnote mark (a, b, ...) where its CIs have a note (``ci_note``), and the notes."""
    marks, notes = [], []
    for record in table.to_dict("records"):
        note = record.get("ci_note")
        if isinstance(note, str) and note:
            mark = chr(ord("a") + len(notes))
            notes.append(f"<sup>{mark}</sup> {html.escape(str(record['method']))}: {html.escape(note)}.")
            marks.append(f"<sup>{mark}</sup>")
        else:
            marks.append("")
    return marks, notes


def _result_table(table: pd.DataFrame, protocol: str) -> tuple[str, list[str]]:
    """A result table's head and body (method, n, accuracy, AUC(s), sensitivity, specificity, classifier:
    the paper's columns; the AUC columns named by what they hold) and its footnotes."""
    marks, notes = _note_marks(table)
    header = ["Method", "n"] + [AUC_NAMES[protocol] if m == "auc" else METRICS[m] for m in METRICS]
    pooled = "pooled_auc" in table
    if pooled:
        header.insert(4, POOLED_AUC)
    header.append("Classifier")
    rows = []
    for record, mark in zip(table.to_dict("records"), marks):
        cells = [_ci(record[m], record[f"{m}_low"], record[f"{m}_high"]) for m in METRICS]
        if pooled:
            cells.insert(2, _ci(record["pooled_auc"], record["pooled_auc_low"], record["pooled_auc_high"]))
        rows.append([Raw(html.escape(str(record["method"])) + mark), f"{record['n_patients']:.0f}", *cells,
                     record["classifier"]])
    return _html_table(header, rows), notes


def _calibration_table(tables: dict[str, pd.DataFrame], numbers: Numbering, facts: RunFacts) -> str:
    rows, classes = [], []
    for family, table in tables.items():
        for index, record in enumerate(table.to_dict("records")):
            rows.append([_sentence(FAMILIES[family]) if index == 0 else "", record["method"],
                         *(_ci(record[m], record[f"{m}_low"], record[f"{m}_high"]) for m in CALIBRATION)])
            classes.append("group" if index == 0 else "")
    where = ", ".join(filter(None, (numbers.link(f"tab-{TABLE_NAMES.get(f, f)}") for f in tables)))
    return numbers.table(
        "tab-calibration", f"Calibration of every model of {where}, on {html.escape(facts.evaluated_on())}.",
        _html_table(["Feature set", "Method", *CALIBRATION.values()], rows, classes),
        ["Brier score: mean squared error of the probability (0 is perfect; 0.25 is a constant 0.5). Calibration "
         "intercept (ideal 0): predicted risks too high below 0, too low above; slope (ideal 1): predictions too "
         "extreme below 1, too moderate above. n/a: undefined, the reason is in the footnotes of the model's "
         f"table; not estimable: beyond ±{UNSTABLE} (predictions that nearly separate the classes)."])


def _results_section(results: Path, numbers: Numbering, facts: RunFacts) -> str:
    parts, tables, methods_seen = [], {}, {}
    for family, name in TABLE_NAMES.items():
        table = _read(results / f"table_{name}.csv")
        title = f"{_sentence(FAMILIES[family])} (paper Table {PAPER_TABLES[family]})"
        if table is None:
            parts.append(f"<h3>{html.escape(title)}</h3><p class='note'>Not computed (its feature tables are "
                         "absent).</p>")
            continue
        tables[family] = table
        body, notes = _result_table(table, facts.protocol)
        ci_method = str(table["ci_method"].iloc[0]) if "ci_method" in table and len(table) else ""
        if ci_method in methods_seen:
            notes.append(f"95% CIs as in {methods_seen[ci_method]}.")
        elif ci_method:
            methods_seen[ci_method] = f"Table {numbers.tables + 1}"
            notes.append("95% CIs: " + html.escape(ci_method) + ".")
        caption = (f"{html.escape(_sentence(FAMILIES[family]))} (the paper's Table {PAPER_TABLES[family]}): "
                   f"classification on {html.escape(facts.evaluated_on(family))}; n: {facts.unit}s each row was "
                   "tested on. Threshold 0.5 for accuracy, sensitivity and specificity.")
        parts.append(numbers.table(f"tab-{name}", caption, body, notes))
    baselines = _read(results / "table_cnn_baselines.csv")
    if baselines is not None and len(baselines):
        body, notes = _result_table(baselines, "holdout")
        md = results / "table_cnn_baselines.md"
        if md.is_file():
            notes.append(html.escape(md.read_text().strip().splitlines()[-1]))
        parts.append(numbers.table("tab-baselines", "CNN baselines (softmax head, the same training and test "
                                   f"split; the paper's Table 4, lower part), on {html.escape(facts.evaluated_on())}.",
                                   body, notes))
        tables["baselines"] = baselines
    if tables:
        parts.append(_calibration_table(tables, numbers, facts))
    parts.append(_comparisons(results, numbers))
    skipped = _read(results / "skipped_rows.csv")
    if skipped is not None and len(skipped):
        parts.append(numbers.table("tab-skipped", "Rows not computed, and why.", _html_table(*_frame_rows(skipped))))
    return "".join(parts)


def _comparisons(results: Path, numbers: Numbering) -> str:
    comparisons = _read(results / "comparisons.csv")
    if comparisons is None or not len(comparisons):
        return ""
    comparisons = comparisons.dropna(axis=1, how="all").drop(columns=["model_a", "model_b"], errors="ignore")
    prespecified = comparisons[comparisons["kind"] == "pre-specified"].drop(columns="kind")
    exploratory = comparisons[comparisons["kind"] != "pre-specified"].drop(columns="kind")
    parts = []
    if len(prespecified):
        parts.append(numbers.table("tab-comparisons", "Pre-specified model comparisons (AUC A vs AUC B).",
                                   _html_table(*_frame_rows(prespecified.dropna(axis=1, how="all"))),
                                   [COMPARISONS_NOTE]))
    if len(exploratory):
        parts.append(f"<details><summary>{len(exploratory)} exploratory comparisons (hypothesis generation only; "
                     "all in <code>results/comparisons.csv</code>)</summary><div class='tablewrap'><table>"
                     + _html_table(*_frame_rows(exploratory.dropna(axis=1, how="all"))) + "</table></div></details>")
        if not len(prespecified):
            parts.append(f"<p class='note'>{COMPARISONS_NOTE}</p>")
    return "".join(parts)


def _figures_section(results: Path, numbers: Numbering, facts: RunFacts) -> str:
    parts = []
    legend = ("pooled OOF AUC, the tables' Pooled OOF AUC column (not the fold mean); each curve from each "
              f"{facts.unit}'s out-of-fold probability averaged over repeats" if facts.protocol != "holdout"
              else "test AUC, the tables' Test AUC column")
    for family, name in TABLE_NAMES.items():
        path = results / f"roc_{name}.png"
        if path.is_file():
            table = numbers.link(f"tab-{name}") or "its table"
            parts.append(numbers.figure(
                f"fig-roc-{name}", _img(path.read_bytes(), f"ROC curves, {FAMILIES[family]}"),
                f"ROC curves of the models of {table} ({html.escape(FAMILIES[family])}) on "
                f"{html.escape(facts.evaluated_on(family))}. One panel per group of rows; in each the model with the "
                f"highest AUC is drawn thick in red, the others thin in grey; legend: {legend}."))
    shown = _read(results / "shown_models.csv")
    chosen = "the models fixed before testing (those of the pre-specified comparisons, else each feature set's " \
             "stacking row)"
    if (results / "calibration.png").is_file():
        parts.append(numbers.figure(
            "fig-calibration", _img((results / "calibration.png").read_bytes(), "calibration", 120),
            f"Reliability of {chosen} on {html.escape(facts.evaluated_on())}: observed fraction malignant against "
            "mean predicted probability in quantile bins (numbers: predictions per bin; thin lines: each repeat "
            "under nested CV); the strip below each panel counts predictions by true class. Panel titles: "
            "calibration intercept and slope [95% CI], as in "
            f"{numbers.link('tab-calibration') or 'the calibration table'}."))
    predictions = _read(results / "predictions.csv")
    if predictions is not None and shown is not None:
        figure = decision_curve_figure(predictions, list(shown[["family", "method"]].itertuples(index=False,
                                                                                                  name=None)))
        if figure is not None:
            low, high = 100 * DECISION_THRESHOLDS[0], 100 * DECISION_THRESHOLDS[-1]
            parts.append(numbers.figure(
                "fig-decision", _img(_png(figure), "decision curves"),
                f"Decision curves of {chosen} on {html.escape(facts.evaluated_on())}: net benefit of biopsying the "
                f"lesions whose predicted probability of malignancy is at least the threshold, for thresholds "
                f"{low:.0f}–{high:.0f}% (BI-RADS 4, the usual biopsy category, starts at a 2% likelihood), against "
                "biopsying every lesion or none. A model is useful where its curve lies above both."))
    icc = _read(results.parent / "features" / ROBUSTNESS_DIR / ICC_TABLE)
    if icc is not None and len(icc):
        parts.append(numbers.figure(
            "fig-icc", _img(_png(icc_figure(icc)), "ICC per feature class"),
            "Robustness to the contour: ICC(3,1) of every radiomic feature between the original lesion contour and "
            "its perturbations (radiomics.robustness), per feature class and region, on every "
            f"{html.escape(facts.unit)} (label-free). With select.icc_threshold, features below it are dropped "
            "inside each training fold, the ICC computed on that fold's training data."))
    return "".join(parts) or "<p class='note'>No figures (the analysis did not run).</p>"


def _gradcam_case(folder: Path, case: dict, model: str) -> str | None:
    """One case's panels with their caption, or None when its files are absent or its id names another folder."""
    patient = str(case["patient_id"])
    heatmap_file, arrays_file = folder / f"{patient}_heatmap.npy", folder / ROI_ARRAYS.format(patient_id=patient)
    if heatmap_file.parent != folder or arrays_file.parent != folder or not arrays_file.is_file() \
            or not heatmap_file.is_file():
        return None
    arrays = np.load(arrays_file, allow_pickle=False)  # a run folder never makes the report unpickle
    heatmap = np.load(heatmap_file, allow_pickle=False)
    label = "malignant" if int(case["label"]) else "benign"
    predicted = "malignant" if float(case["probability"]) >= 0.5 else "benign"
    verdict = "correct" if str(case.get("correct")) == "True" else "wrong"
    title = f"{patient} · true {label} · p(malignant) = {float(case['probability']):.2f} ({verdict}) · {model}"
    figure = gradcam_figure(arrays["roi"], arrays["mask"], heatmap, title)
    head = case.get("head_prob_malignant")
    head_text = ("" if head is None or float(head) == float(case["probability"])
                 else f"; the drawn network's own p = {float(head):.2f}")
    fold = f"; network of outer fold {case['fold']}" if str(case.get("fold") or "") else ""
    inside = heat_inside(heatmap, arrays["mask"])
    caption = (f"{patient}: true {label}, p(malignant) = {float(case['probability']):.2f}, predicted {predicted} "
               f"({verdict}){head_text}{fold}. Heat inside the lesion: {inside:.0%} (the lesion covers "
               f"{arrays['mask'].mean():.0%} of the ROI); ROI {heatmap.shape[1]} × {heatmap.shape[0]} px.")
    png = _png(figure, GRADCAM_DPI)
    return (f"<figure class='cam' style='--width:{_css_width(png, GRADCAM_DPI)}'>"
            f"{_img(png, f'Grad-CAM {patient}', GRADCAM_DPI)}<figcaption>{html.escape(caption)}</figcaption></figure>")


def _gradcam_section(out: Path, config: RunConfig, numbers: Numbering) -> str:
    parts = []
    spec = get_backbone(config.deep.backbone)
    backbone = spec.display_name
    for cases_file in sorted((out / "gradcam").glob("*/cases.csv")):
        modality = cases_file.parent.name
        cases = pd.read_csv(cases_file, keep_default_na=False, dtype={"patient_id": str})
        model = f"{backbone} ({modality.upper()})"
        panels, missing = [], []
        for case in cases.to_dict("records"):
            drawn = _gradcam_case(cases_file.parent, case, model)
            if drawn is None:
                missing.append(str(case["patient_id"]))
            else:
                panels.append(drawn)
        sources = cases["probability_source"] if "probability_source" in cases else pd.Series(dtype=str)
        notes = " ".join(html.escape(GRADCAM_NOTES.get(source, source)) for source in dict.fromkeys(sources))
        absent = (f" Not drawn (arrays absent or id outside the folder; <code>mmdlr run --force gradcam</code> "
                  f"writes them): {html.escape(', '.join(missing))}." if missing else "")
        if panels:
            parts.append(numbers.figure(
                f"fig-gradcam-{len(parts)}", f"<div class='cams'>{''.join(panels)}</div>",
                f"Grad-CAM of the {html.escape(backbone)} network ({html.escape(config.deep.mode)} backbone, "
                f"{html.escape(modality.upper())}): the most confident correct and wrong cases. Each case: the ROI "
                "crop (intensities scaled to its 0.5–99.5 percentiles, as the network sees it), the same with the "
                "lesion mask's outline (yellow), and the heat map over it (outline white) with its colour bar. "
                f"{notes}{absent}", "camset"))
        else:
            parts.append(f"<p class='note'>{html.escape(modality.upper())}: no Grad-CAM panels.{absent}</p>")
    if not parts:
        return "<p class='note'>No Grad-CAM (deep stage disabled).</p>"
    reading = gradcam_reading(spec.spatial_size(config.deep.spatial_size))
    return f"<p class='note'>{html.escape(reading)}</p>" + "".join(parts)


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


def _models_section(results: Path, numbers: Numbering) -> str:
    index = _read(results / "models" / "index.csv")
    if index is None:
        return "<p class='note'>No saved models.</p>"
    shown = index.drop(columns=["path"], errors="ignore").assign(
        family=lambda frame: frame["family"].map(lambda f: _sentence(FAMILIES.get(f, f))))
    parts = [numbers.table("tab-models", "Saved models (<code>results/models/</code>), used by <code>mmdlr "
                           "predict</code> and <code>mmdlr serve</code>.", _html_table(*_frame_rows(shown)))]
    selected = selected_radiomic_features(results / "models", index)
    if len(selected):
        parts.append(numbers.table("tab-features", "Radiomic features kept by Mann–Whitney → Spearman → LASSO in "
                                   "the final single-modality models.", _html_table(*_frame_rows(selected))))
    return "".join(parts)


# TRIPOD+AI (Collins et al., BMJ 2024;385:e078378): item, topic, what it asks (abridged), and where this report
# answers it: keys of tables/figures/sections, or text for items the run cannot answer.
TRIPOD_AI = [
    ("1", "Title", "Development or evaluation of a prediction model, target population, outcome", "#top"),
    ("2", "Abstract", "TRIPOD+AI for Abstracts", "Not done: for the manuscript"),
    ("3a", "Background", "Healthcare context, rationale, existing models", "Not done: for the manuscript (method: "
     "Lu et al. 2024)"),
    ("3b", "Background", "Target population, intended purpose and users", "#model-card"),
    ("3c", "Background", "Known health inequalities", "Not done"),
    ("4", "Objectives", "Development and/or validation", "#model-card"),
    ("5a", "Data", "Data sources, rationale, representativeness", "#sec-protocol"),
    ("5b", "Data", "Dates of data collection", "Not in the manifest: for the manuscript"),
    ("6a", "Participants", "Setting, number and location of centres", "Not in the manifest: for the manuscript"),
    ("6b", "Participants", "Eligibility criteria", "Not in the manifest: for the manuscript"),
    ("6c", "Participants", "Treatments received", "Not applicable (diagnosis before treatment)"),
    ("7", "Data preparation", "Pre-processing and quality checks", "#sec-protocol"),
    ("8a", "Outcome", "Definition, how and when assessed", "#sec-protocol"),
    ("8b", "Outcome", "Qualifications of outcome assessors", "Not in the manifest: for the manuscript"),
    ("8c", "Outcome", "Blinding of outcome assessment", "Not in the manifest: for the manuscript"),
    ("9a", "Predictors", "Choice and pre-selection of predictors", "#sec-protocol"),
    ("9b", "Predictors", "Definition and measurement of predictors", "#sec-protocol"),
    ("9c", "Predictors", "Qualifications of predictor assessors (mask delineation)",
     "Not in the manifest: for the manuscript"),
    ("10", "Sample size", "How the study size was arrived at", "Not done (no sample size calculation)"),
    ("11", "Missing data", "Handling of missing data", "#sec-protocol"),
    ("12a", "Analytical methods", "Use of the data: partitioning", "#sec-protocol"),
    ("12b", "Analytical methods", "Handling of predictors (scaling, transformation)", "#sec-protocol"),
    ("12c", "Analytical methods", "Model type, building steps, tuning, internal validation", "#sec-protocol"),
    ("12d", "Analytical methods", "Heterogeneity across clusters", "Not done (one data source)"),
    ("12e", "Analytical methods", "Performance measures and model comparisons", "#sec-protocol"),
    ("12f", "Analytical methods", "Model updating (recalibration)", "Not done"),
    ("12g", "Analytical methods", "How predictions were calculated", "tab-models"),
    ("13", "Class imbalance", "Methods for class imbalance", "Not done (none used; classes as sampled)"),
    ("14", "Fairness", "Approaches to model fairness", "Not done (no sociodemographic data in the manifest)"),
    ("15", "Model output", "Output type; classification thresholds and how chosen", "#sec-protocol"),
    ("16", "Training vs evaluation", "Differences between development and evaluation data", "tab-clinical"),
    ("17", "Ethical approval", "Ethics committee, consent", "Not in the manifest: for the manuscript"),
    ("18a–f", "Open science", "Funding, conflicts, protocol, registration, data and code sharing",
     "Code: mmdlr (see Software); the rest for the manuscript"),
    ("19", "Patient and public involvement", "Details of involvement", "Not done"),
    ("20a", "Participants (results)", "Flow of participants, numbers with and without the outcome", "tab-modalities"),
    ("20b", "Participants (results)", "Characteristics, missing data", "tab-clinical"),
    ("20c", "Participants (results)", "Development vs evaluation predictor distributions", "tab-clinical"),
    ("21", "Model development", "Participants and events in each analysis", "tab-radiomics"),
    ("22", "Model specification", "Full model to allow predictions in new individuals", "tab-models"),
    ("23a", "Model performance", "Performance with CIs, incl. key subgroups",
     ("tab-radiomics", "tab-deep", "tab-fusion", "tab-calibration", "fig-roc-radiomics", "fig-calibration",
      "fig-decision")),
    ("23b", "Model performance", "Heterogeneity across clusters", "Not done (one data source)"),
    ("24", "Model updating", "Results of any model updating", "Not applicable (no updating)"),
    ("25", "Interpretation", "Overall interpretation, fairness", "Not done: for the manuscript"),
    ("26", "Limitations", "Limitations: sample, overfitting, missing data", "#model-card"),
    ("27a", "Usability", "Handling poor-quality or unavailable input data", "#model-card"),
    ("27b", "Usability", "User interaction and expertise required", "#model-card"),
    ("27c", "Usability", "Next steps, applicability, generalisability", "Not done: for the manuscript"),
]
SECTION_NAMES = {"#top": "Title", "#sec-protocol": "Protocol", "#model-card": "Model card"}


def _where(answer: str | tuple[str, ...], numbers: Numbering) -> str:
    keys = (answer,) if isinstance(answer, str) else answer
    if keys[0].startswith("#"):
        return f"<a href='{keys[0]}'>{SECTION_NAMES[keys[0]]}</a>"
    links = [link for key in keys if (link := numbers.link(key))]
    if links:
        return ", ".join(links)
    return html.escape(keys[0]) if not keys[0].startswith(("tab-", "fig-")) else "Not done (not computed in this run)"


def _tripod_table(numbers: Numbering) -> str:
    rows = [[item, topic, text, Raw(_where(answer, numbers))] for item, topic, text, answer in TRIPOD_AI]
    return numbers.table("tab-tripod", "TRIPOD+AI checklist (Collins et al. 2024): where this report answers each "
                         "item; items the run cannot know are left to the manuscript.",
                         _html_table(["Item", "Topic", "Checklist item (abridged)", "Where in this report"], rows))


def _model_card(out: Path, config: RunConfig, source: Manifest, facts: RunFacts) -> str:
    results = out / "results"
    shown = _read(results / "shown_models.csv")
    performance = []
    if shown is not None:
        for family, method in shown[["family", "method"]].itertuples(index=False):
            table = _read(results / f"table_{TABLE_NAMES.get(family, family)}.csv")
            row = None if table is None else table[table["method"] == method]
            if row is not None and len(row):
                record = row.iloc[0]
                metrics = ", ".join(f"{label} {_ci(record[name], record[f'{name}_low'], record[f'{name}_high'])}"
                                    for name, label in (("auc", "AUC"), ("sensitivity", "sensitivity"),
                                                        ("specificity", "specificity")))
                performance.append(f"{html.escape(FAMILIES.get(family, family))}, {html.escape(method)} "
                                   f"({html.escape(str(record['classifier']))}): {metrics}")
    modalities = ", ".join(m.upper() for m in source.modalities)
    items = {
        "Intended use": "Research use: to estimate the probability that a breast lesion, already found and "
                        f"outlined by a radiologist on {modalities}, is malignant, as a second opinion beside the "
                        "BI-RADS assessment. Not for screening or detection, not a medical device, not a "
                        "replacement for biopsy.",
        "Inputs": "Per modality the image and a lesion mask (the ROI is the mask's bounding box plus "
                  f"{config.roi.margin:g} {'%' if config.roi.margin_unit == 'percent' else 'pixels'}); a missing "
                  "modality is allowed where the model combines modalities late. Unreadable files, empty masks or "
                  "masks that do not match their image are refused with the file named (<code>mmdlr "
                  "validate</code>); a user must supply the masks and check them.",
        "Data": html.escape(f"{cohort_counts(config, source)}, labels from {config.report.label_source}; "
                            + ("hold-out split " + ", ".join(f"{k} {v}" for k, v in facts.split_sizes.items() if k)
                               if facts.protocol == "holdout" else facts.design()) + "."),
        "Performance": (f"Models fixed before testing, on {html.escape(facts.evaluated_on())}: "
                        + "; ".join(performance) + "." if performance else "Not computed."),
        "Limits": (f"One data source, {facts.units(len(source.table))}: wide confidence intervals and no external "
                   "validation; performance in another hospital, on other scanners or in another population is "
                   f"unknown. The threshold ({config.analysis.threshold}) was not tuned for a clinical "
                   "operating point; check calibration before reading probabilities as risks. Grad-CAM shows where "
                   "the network looked, not why, at a coarse resolution."),
    }
    return "<dl class='card'>" + "".join(f"<dt>{name}</dt><dd>{text}</dd>" for name, text in items.items()) + "</dl>"


def render_report(out_dir: str | Path, config: RunConfig, source: Manifest) -> str:
    """The report's HTML text for a run folder."""
    out = Path(out_dir)
    results = out / "results"
    numbers = Numbering()
    facts = _run_facts(out, config)
    protocol = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>"
                       for k, v in protocol_items(config, source).items())
    sections = [
        ("sec-cohort", "Cohort", _cohort_section(out, config, source, numbers, facts)),
        ("sec-protocol", "Protocol (TRIPOD+AI methods items)", f"<dl class='protocol'>{protocol}</dl>"),
        ("sec-results", "Results", _results_section(results, numbers, facts)),
        ("sec-figures", "ROC, calibration and decision curves", _figures_section(results, numbers, facts)),
        ("sec-gradcam", "Grad-CAM: the most confident correct and wrong cases", _gradcam_section(out, config, numbers)),
        ("sec-models", "Selected features and classifiers", _models_section(results, numbers)),
        ("model-card", "Model card", _model_card(out, config, source, facts)),
    ]
    sections.append(("sec-tripod", "TRIPOD+AI checklist", _tripod_table(numbers)))
    versions = " · ".join(f"{html.escape(name)} {html.escape(version)}"
                          for name, version in sorted(package_versions().items()))
    sections.append(("sec-software", "Software", f"<p class='versions'>{versions}</p><details><summary>Resolved "
                     "configuration</summary><pre>" + html.escape(yaml.safe_dump(config.raw, sort_keys=False))
                     + "</pre></details>"))
    nav = "".join(f"<a href='#{key}'>{html.escape(title)}</a>" for key, title, _ in sections)
    body = "".join(f"<h2 id='{key}'>{html.escape(title)}</h2>{content}" for key, title, content in sections)
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>mmdlr report</title>"
            f"<style>{STYLE}</style></head><body><h1 id='top'>Benign vs malignant breast lesions from "
            f"{html.escape(', '.join(m.upper() for m in source.modalities))}: multimodal deep-learning radiomics"
            f"</h1><p class='note'>mmdlr {__version__}, {created}, run folder <code>{html.escape(str(out))}</code>. "
            f"Method: Lu et al. 2024, Front. Med. 11:1402967, run without leakage (every fitted step inside the "
            f"folds). Development and internal validation of a diagnostic prediction model.</p><nav>{nav}</nav>"
            f"{body}</body></html>")


def write_report(out_dir: str | Path, config: RunConfig, source: Manifest) -> Path:
    """Write ``OUT/report.html`` atomically and return its path."""
    return write_text(render_report(out_dir, config, source), Path(out_dir) / "report.html")
