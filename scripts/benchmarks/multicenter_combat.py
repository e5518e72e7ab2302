#!/usr/bin/env python
"""Multi-centre synthetic cohort, with and without ComBat: the tables of docs/benchmarks.md section 5.

Reads the ``mmdlr analyze`` result folders ``WORK/out/<family>_<protocol>_combat_<false|true>`` (the commands
are in docs/benchmarks.md) and prints, per family:

1. leave-centre-out (each centre tested by the model trained on the other): per test centre the AUC with its
   DeLong 95% CI without and with ComBat, the paired DeLong p between the two, accuracy and specificity at
   the run's threshold;
2. nested CV over both centres: the pooled out-of-fold AUC [BCa CI] from the result table and the paired
   DeLong p;
3. the centre effect itself: the share of each feature table's features whose two centres differ (Welch t
   and Mann-Whitney p < 0.05), raw and after ComBat fitted on all patients (a diagnostic, not a model).

    .venv/bin/python scripts/benchmarks/multicenter_combat.py --work /tmp/mc
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu, norm, ttest_ind

from mmdlr.analysis.features import feature_names, read_feature_table
from mmdlr.evaluate import delong_auc_variance, delong_test
from mmdlr.select.harmonize import ComBatHarmonizer


def _auc_cell(labels: np.ndarray, scores: np.ndarray) -> str:
    auc, variance = delong_auc_variance(labels, scores)
    half = norm.ppf(0.975) * np.sqrt(variance)
    return f"{auc:.3f} [{max(0.0, auc - half):.3f}, {min(1.0, auc + half):.3f}]"


def _predictions(results: Path, family: str) -> pd.DataFrame:
    table = pd.read_csv(results / "predictions.csv", dtype={"patient_id": str})
    return table[table["family"] == family]


def leave_center_out_table(out: Path, family: str, centers: pd.Series) -> str:
    without, with_combat = (_predictions(out / f"{family}_leave_center_out_combat_{c}" / "results", family)
                            for c in ("false", "true"))
    lines = ["| rows | test centre (n) | AUC without [95% CI] | AUC with ComBat [95% CI] | DeLong p | "
             "accuracy without / with | specificity without / with |", "|---|---|---|---|---|---|---|"]
    for method in without["method"].unique():
        for center in sorted(centers.unique()):
            a = without[(without["method"] == method) & (without["patient_id"].map(centers) == center)]
            a = a.set_index("patient_id")
            b = with_combat[with_combat["method"] == method].set_index("patient_id").loc[a.index]
            labels = a["label"].to_numpy()
            _, p = delong_test(labels, a["probability"].to_numpy(), b["probability"].to_numpy())
            accuracy = [((f["probability"] >= f["threshold"]).astype(int) == labels).mean() for f in (a, b)]
            specificity = [((f["probability"] < f["threshold"]) & (labels == 0)).sum() / (labels == 0).sum()
                           for f in (a, b)]
            lines.append(f"| {method} | {center} ({len(a)}) | {_auc_cell(labels, a['probability'].to_numpy())} | "
                         f"{_auc_cell(labels, b['probability'].to_numpy())} | {p:.2f} | "
                         f"{accuracy[0]:.3f} / {accuracy[1]:.3f} | {specificity[0]:.3f} / {specificity[1]:.3f} |")
    return "\n".join(lines)


def nested_table(out: Path, family: str) -> str:
    folders = [out / f"{family}_nested_cv_combat_{c}" / "results" for c in ("false", "true")]
    tables = [pd.read_csv(folder / f"table_{family}.csv").set_index("method") for folder in folders]
    without, with_combat = (_predictions(folder, family) for folder in folders)
    lines = ["| rows | pooled OOF AUC without [95% CI] | with ComBat [95% CI] | DeLong p |", "|---|---|---|---|"]
    for method in tables[0].index:
        a = without[without["method"] == method].set_index("patient_id")
        b = with_combat[with_combat["method"] == method].set_index("patient_id").loc[a.index]
        _, p = delong_test(a["label"].to_numpy(), a["probability"].to_numpy(), b["probability"].to_numpy())
        cells = [f"{t.loc[method, 'pooled_auc']:.3f} [{t.loc[method, 'pooled_auc_low']:.3f}, "
                 f"{t.loc[method, 'pooled_auc_high']:.3f}]" for t in tables]
        lines.append(f"| {method} | {cells[0]} | {cells[1]} | {p:.2f} |")
    return "\n".join(lines)


def centre_effect_table(paths: list[Path]) -> str:
    lines = ["| table | features | patients | exact zeros | t p < 0.05 raw / ComBat | Mann-Whitney p < 0.05 raw / "
             "ComBat |", "|---|---|---|---|---|---|"]
    for path in paths:
        table = read_feature_table(path)
        names = [c for c in feature_names(table) if np.ptp(table[c].dropna()) > 0]
        table = table.dropna(subset=names)
        values, centers = table[names].to_numpy(float), table["center"].to_numpy()
        harmonized = ComBatHarmonizer(center_column=0).fit_transform(
            np.column_stack([centers.astype(object), values]))
        shares = []
        for test in (lambda a, b: ttest_ind(a, b, axis=0, equal_var=False).pvalue,
                     lambda a, b: mannwhitneyu(a, b, axis=0).pvalue):
            shares.append([np.mean(test(v[centers == "A"], v[centers == "B"]) < 0.05) for v in (values, harmonized)])
        lines.append(f"| {path.name} | {len(names)} | {len(table)} | {np.mean(values == 0):.0%} | "
                     f"{shares[0][0]:.0%} / {shares[0][1]:.0%} | {shares[1][0]:.0%} / {shares[1][1]:.0%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/mc"),
                        help="folder with cohort/, features/ and out/ (docs/benchmarks.md section 5)")
    parser.add_argument("--families", nargs="+", default=["radiomics", "deep"])
    args = parser.parse_args()
    centers = pd.read_csv(args.work / "cohort" / "manifest.csv", dtype={"patient_id": str}).set_index(
        "patient_id")["center"]
    for family in args.families:
        print(f"\n{family}: leave-centre-out\n{leave_center_out_table(args.work / 'out', family, centers)}")
        print(f"\n{family}: nested CV over both centres\n{nested_table(args.work / 'out', family)}")
    print(f"\ncentre effect\n{centre_effect_table(sorted((args.work / 'features').glob('*.csv')))}")


if __name__ == "__main__":
    main()
