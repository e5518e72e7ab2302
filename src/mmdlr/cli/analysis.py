"""Analysis command: analyze (the paper's result tables from feature tables)."""

from __future__ import annotations

import argparse

from mmdlr.cli.pipeline import require_config_file


def run_analyze(args: argparse.Namespace) -> int:
    from mmdlr.analysis import run_analysis

    require_config_file(args.config)
    result = run_analysis(args.features, args.out, args.config, manifest=args.manifest, progress=not args.quiet)
    for family, table in result.tables.items():
        print(f"\n{family}")
        print(table[["method", "accuracy", "AUC [95% CI]", "Sensitivity [95% CI]", "Specificity [95% CI]",
                     "classifier"]].to_string(index=False))
    if result.skipped:
        print(f"\n{len(result.skipped)} row(s) skipped (see skipped_rows.csv)")
    print(f"\nresults in {result.results_dir}")
    return 0


def register(subparsers) -> None:
    analyze = subparsers.add_parser("analyze", help="single-modality and fusion models with CIs (paper Tables 2-4)")
    analyze.add_argument("--features", required=True, help="folder with radiomics_<mod>.csv / deep_<mod>.csv")
    analyze.add_argument("--out", required=True, help="output folder (results go to OUT/results)")
    analyze.add_argument("--config", default=None, help="analysis YAML, e.g. configs/paper.yaml (default: built-in)")
    analyze.add_argument("--manifest", default=None, help="cohort manifest, for the clinical table (Table 1)")
    analyze.set_defaults(handler=run_analyze)
