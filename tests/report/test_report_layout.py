"""The report reads like the paper: readable labels with units, numbers right and text left, one-line CI cells,
numbered captions, legible ROC panels, decision curves over biopsy thresholds, fixed-size Grad-CAM panels, a
TRIPOD+AI checklist; checked on a finished run in headless Chromium at 1400 px."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmdlr.analysis import plots
from mmdlr.pipeline.run import TEST_SPLIT
from mmdlr.report.html import (TRIPOD_AI, Numbering, RunFacts, _clinical_table, _gradcam_section, _html_table,
                               clinical_label)


class _Cells(HTMLParser):
    """(tag, class, text) of every th/td, and the rows' classes."""

    def __init__(self, text: str):
        super().__init__()
        self.cells, self.rows, self._open = [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag in ("td", "th"):
            self._open = [tag, dict(attrs).get("class", ""), ""]
        elif tag == "tr":
            self.rows.append(dict(attrs).get("class", ""))

    def handle_data(self, data):
        if self._open:
            self._open[2] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._open:
            self.cells.append(tuple(self._open))
            self._open = None


def test_numbers_right_text_left_and_ci_cells_unbroken():
    body = _html_table(["Method", "Test AUC [95% CI]", "Calibration intercept [95% CI]", "Classifier"],
                       [["US", "0.812 [0.693-0.929]", "−0.339 [−1.973, 1.295]", "SVM"],
                        ["Ensemble", "n/a", "0.074", "LR+RF"]])
    classes = {text: css for _, css, text in _Cells(body).cells}
    assert classes["Test AUC [95% CI]"] == classes["0.812 [0.693-0.929]"] == classes["n/a"] == "num"
    assert classes["−0.339 [−1.973, 1.295]"] == "num"
    assert classes["Method"] == classes["US"] == classes["SVM"] == ""


@pytest.mark.parametrize(("column", "label"), [("diameter_mm", "Diameter (mm)"), ("ca153", "CA 15-3 (U/mL)"),
                                               ("age", "Age (years)"), ("tumour_volume_ml", "Tumour volume (mL)"),
                                               ("birads", "BI-RADS category"), ("smoker", "Smoker")])
def test_clinical_columns_get_readable_names_with_units(column, label):
    assert clinical_label(column) == label


def test_table_1_names_each_variable_once_with_its_levels_indented():
    clinical = pd.DataFrame([
        {"variable": "pathology", "level": "", "train": "", "test": "", "test_used": "chi-square",
         "statistic": 0.087, "p_value": 0.768, "p_mannwhitney": np.nan},
        {"variable": "pathology", "level": "benign", "train": "89 (34.6%)", "test": "23 (35.4%)", "test_used": "",
         "statistic": np.nan, "p_value": np.nan, "p_mannwhitney": np.nan},
        {"variable": "pathology", "level": "malignant", "train": "168 (65.4%)", "test": "42 (64.6%)",
         "test_used": "", "statistic": np.nan, "p_value": np.nan, "p_mannwhitney": np.nan},
        {"variable": "diameter_mm", "level": "", "train": "19.94 ± 11.27", "test": "22.78 ± 10.01",
         "test_used": "t-test", "statistic": -1.476, "p_value": 0.0004, "p_mannwhitney": 0.2}])
    numbers = Numbering()
    html = _clinical_table(clinical, numbers, RunFacts("holdout", "patient", 1, 5, {"train": 257, "test": 65},
                                                       {}))
    parsed = _Cells(html)
    texts = [text for _, _, text in parsed.cells]
    assert texts[:5] == ["Characteristic", "Training (n = 257)", "Test (n = 65)", "Statistic", "p"]
    assert texts.count("Pathology") == 1 and "pathology" not in texts and "Diameter (mm)" in texts
    assert ["Benign", "89 (34.6%)", "23 (35.4%)"] == texts[texts.index("Benign"):texts.index("Benign") + 3]
    assert "χ² = 0.09" in texts and "t = −1.48" in texts and "<0.001" in texts
    assert parsed.rows[1:] == ["group", "level", "level", "group"]
    assert "<b>Table 1.</b> Characteristics of the training and test patients" in html
    for raw in ("test_used", "p_mannwhitney", "diameter_mm", "chi-square"):
        assert raw not in html


def test_roc_highlights_the_best_model_of_each_row_group(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 30)
    methods = {"US": ("single", 0.6), "MG": ("single", 2.0), "MR": ("single", 1.0), "US+MG": ("early", 0.5),
               "MG+MR": ("early", 1.5), "Ensemble": ("ensemble", 1.2), "Stacking": ("stacking", 3.0)}
    pooled = pd.concat([pd.DataFrame({"method": method, "label": labels,
                                      "probability": 1 / (1 + np.exp(-(shift * (labels - 0.5) + rng.normal(size=60))))})
                        for method, (_, shift) in methods.items()])
    kept = []
    monkeypatch.setattr(plots.plt, "close", kept.append)
    plots.plot_roc(pooled, [(method, kind) for method, (kind, _) in methods.items()], "Radiomics",
                   tmp_path / "roc.png", "test AUC")
    panels = kept[0].axes
    assert [axis.get_title() for axis in panels] == ["Single modality", "Early fusion (features joined)",
                                                      "Late fusion"]
    for axis, best in zip(panels, ("MG", "MG+MR", "Stacking")):
        thick = [line for line in axis.lines if line.get_linewidth() > 2]
        assert [line.get_label().split()[0] for line in thick] == [best]
        assert all(line.get_color() in (plots.LIGHT, "#cccccc") for line in axis.lines if line not in thick)
        assert axis.get_legend().get_texts()[0].get_text().startswith(best)  # listed first, in bold


def test_decision_curves_span_biopsy_thresholds_and_every_model_curve():
    labels = np.repeat([0, 1], 20)
    predictions = pd.DataFrame({"family": "radiomics", "method": np.repeat(["good", "poor"], 40),
                                "patient_id": np.tile([f"P{i}" for i in range(40)], 2),
                                "label": np.tile(labels, 2),
                                "probability": np.r_[0.2 + 0.6 * labels, 0.9 - 0.8 * labels]})
    figure = plots.decision_curve_figure(predictions, [("radiomics", "good"), ("radiomics", "poor")])
    axis = figure.axes[0]
    assert axis.get_xlim() == (0, 50) and axis.get_xlabel() == "Threshold probability of malignancy (%)"
    poor = next(line for line in axis.lines if line.get_label() == "Radiomics: poor")
    assert axis.get_ylim()[0] < poor.get_ydata().min() < -0.3  # a harmful model is shown, not clipped


def _gradcam_folder(root: Path, name: str, shapes: dict[str, tuple[int, int]]) -> Path:
    folder = root / "gradcam" / name
    folder.mkdir(parents=True)
    for patient, shape in shapes.items():
        mask = np.zeros(shape, bool)
        mask[shape[0] // 4:-shape[0] // 4, shape[1] // 4:-shape[1] // 4] = True
        np.savez(folder / f"{patient}_roi.npz", roi=np.random.default_rng(0).random(shape), mask=mask)
        np.save(folder / f"{patient}_heatmap.npy", mask.astype(np.float32))
    return folder


def test_gradcam_panels_have_one_size_and_state_model_probability_and_truth(tmp_path):
    from mmdlr.pipeline.config import run_config_from_dict

    folder = _gradcam_folder(tmp_path, "us", {"P1": (47, 73), "P2": (120, 64)})
    pd.DataFrame({"patient_id": ["P1", "P2"], "label": [1, 0], "probability": [0.91, 0.8],
                  "head_prob_malignant": [0.91, 0.8], "correct": [True, False], "probability_source": TEST_SPLIT,
                  "fold": ["", ""], "a_later_column": [1, 2]}).to_csv(folder / "cases.csv", index=False)
    config = run_config_from_dict({"deep": {"backbone": "efficientnet_lite0"}})
    section = _gradcam_section(tmp_path, config, Numbering())
    sizes = {Image.open(io.BytesIO(base64.b64decode(data))).size for data in re.findall(r"base64,([^']+)'", section)}
    assert len(sizes) == 1  # ROIs of 47 × 73 and 120 × 64 px drawn in the same fixed-size panels
    assert "<b>Figure 1.</b> Grad-CAM of the EfficientNet-Lite0 network" in section
    assert "P1: true malignant, p(malignant) = 0.91, predicted malignant (correct)" in section
    assert "P2: true benign, p(malignant) = 0.80, predicted malignant (wrong)" in section
    assert "Heat inside the lesion: 100%" in section


def test_gradcam_section_escapes_folder_names_and_shows_no_file_outside_its_folder(tmp_path):
    folder = _gradcam_folder(tmp_path, "<img src=x onerror=alert(1)>", {"P1": (20, 20)})
    _gradcam_folder(tmp_path, "elsewhere", {"outside": (20, 20)})
    pd.DataFrame({"patient_id": ["P1", "../elsewhere/outside"], "label": 1, "probability": 0.9,
                  "head_prob_malignant": 0.9, "correct": True, "probability_source": TEST_SPLIT}
                 ).to_csv(folder / "cases.csv", index=False)
    from mmdlr.pipeline.config import run_config_from_dict

    section = _gradcam_section(tmp_path, run_config_from_dict({}), Numbering())
    assert "<IMG" not in section and "&lt;IMG SRC=X ONERROR=ALERT(1)&gt;" in section
    assert section.count("class='cam'") == 1 and "Not drawn" in section


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium on this machine (.ci/run installs Debian's chromium)")


# Measures the laid-out page at 1400 px and writes what it found into the DOM for --dump-dom.
LAYOUT_PROBE = """<script>
window.addEventListener('load', () => {
  const px = v => parseFloat(v);
  const wrapped = [...document.querySelectorAll('td.num')].filter(td => {
    const text = document.createRange();
    text.selectNodeContents(td);  // the text's own lines, not the row's height
    return text.getBoundingClientRect().height > 1.9 * px(getComputedStyle(td).fontSize);
  }).map(td => td.textContent);
  const align = [...document.querySelectorAll('td')].map(td => [td.className, getComputedStyle(td).textAlign]);
  const cams = [...document.querySelectorAll('figure.cam img')].map(img => [img.width, img.height]);
  const probe = document.createElement('pre');
  probe.id = 'layout-probe';
  probe.textContent = JSON.stringify({wrapped, align, cams, width: document.documentElement.scrollWidth,
    captions: [...document.querySelectorAll('caption > b, figcaption > b')].map(b => b.textContent)});
  document.body.appendChild(probe);
});
</script>"""


def test_report_layout_in_headless_chromium_at_1400_px(finished_run, tmp_path):
    result, _ = finished_run
    page = tmp_path / "report.html"
    page.write_text(result.report.read_text().replace("</body>", LAYOUT_PROBE + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([_chromium(), *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    probe = json.loads(re.search(r'<pre id="layout-probe">(.*?)</pre>', dom, re.S).group(1).replace("&amp;", "&"))
    assert probe["wrapped"] == [] and probe["width"] <= 1400  # one-line CI cells, nothing wider than the window
    assert {tuple(pair) for pair in probe["align"]} <= {("num", "right"), ("", "left")}
    assert ("num", "right") in {tuple(pair) for pair in probe["align"]}
    tables = [c for c in probe["captions"] if c.startswith("Table")]
    figures = [c for c in probe["captions"] if c.startswith("Figure")]
    assert tables == [f"Table {i}." for i in range(1, len(tables) + 1)] and len(tables) >= 8
    assert figures == [f"Figure {i}." for i in range(1, len(figures) + 1)] and len(figures) >= 5 + 3
    assert len(probe["cams"]) >= 3 and len({tuple(size) for size in probe["cams"]}) == 1  # one fixed size
    for text in ("Table 1.</b> Characteristics of the training and test patients",
                 "(the paper's Table 2): classification on the", "Test AUC [95% CI]", "Calibration slope [95% CI]",
                 "ROC curves of the models of", "Decision curves of", "Grad-CAM of the EfficientNet-Lite0 network",
                 "Intended use", "Performance", "Limits", "TRIPOD+AI checklist"):
        assert text in dom, text
    checklist = dom[dom.index("TRIPOD+AI checklist (Collins"):]
    for item, *_ in TRIPOD_AI:
        assert f"<td>{item}</td>" in checklist, item
    assert "p_mannwhitney" not in dom and "test_used" not in dom and "ci_note" not in dom
