"""`mmdlr evaluate`: a run's saved models on a labelled external cohort, beside their internal results."""

from __future__ import annotations

import argparse

from mmdlr.cli.serve import _add_common, _predictor


def run_evaluate(args: argparse.Namespace) -> int:
    from mmdlr.evaluate.external import evaluate_external, require_replaceable, write_evaluation

    require_replaceable(args.out)
    predictor = _predictor(args)
    evaluation = evaluate_external(predictor, args.manifest, progress=not args.quiet)
    write_evaluation(evaluation, predictor, args.manifest, args.out)
    warned = evaluation.shift_warnings["patient_id"].nunique()
    print(f"{evaluation.predictions['model'].nunique()} model(s) on "
          f"{evaluation.predictions['patient_id'].nunique()} patient(s) written to {args.out} (evaluation.html)"
          + (f"; {warned} patient(s) outside the training distribution (shift_warnings.csv)" if warned else ""))
    return 0


def register(subparsers) -> None:
    evaluate = subparsers.add_parser("evaluate", help="external validation: a run's saved models on a labelled "
                                                      "cohort, with internal vs external tables and shift warnings")
    _add_common(evaluate)
    evaluate.add_argument("--manifest", required=True,
                          help="the external cohort: patient_id, label and <mod>_image/<mod>_mask columns (and center "
                               "for a run trained with ComBat)")
    evaluate.add_argument("--out", required=True, help="output folder (written whole or not at all): tables, "
                                                       "figures, shift_warnings.csv, evaluation.html")
    evaluate.set_defaults(handler=run_evaluate)
