"""`mmdlr demo`: the whole pipeline on a generated synthetic cohort."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmdlr.atomic import write_text
from mmdlr.io.manifest import read_manifest
from mmdlr.io.validate import validate_manifest
from mmdlr.roi.cache import RoiSettings, crop_cohort
from mmdlr.synthetic import CohortSettings, generate_cohort


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    progress = not args.quiet
    manifest_path = generate_cohort(out / "cohort", CohortSettings(patients=args.patients, seed=args.seed),
                                    progress=progress)
    report = validate_manifest(manifest_path, progress=progress)
    if not report.ok:
        raise RuntimeError("generated cohort failed validation:\n" + "\n".join(report.problems))
    index = crop_cohort(read_manifest(manifest_path), out, RoiSettings(), progress=progress)
    rois = index.groupby("modality").agg(rois=("patient_id", "size"), mean_lesion_pixels=("lesion_pixels", "mean"))
    summary = "\n\n".join([
        f"# mmdlr demo\n\nManifest: {manifest_path}",
        "## Cohort\n\n" + report.summary.to_markdown(index=False),
        "## ROIs\n\n" + rois.round(1).to_markdown(),
    ]) + "\n"
    write_text(summary, out / "summary.md")
    print(summary)
    print(f"summary: {out / 'summary.md'}")
    return 0


def register(subparsers) -> None:
    demo = subparsers.add_parser("demo", help="run the pipeline on a generated synthetic cohort")
    demo.add_argument("--out", default="demo_output")
    demo.add_argument("--patients", type=int, default=60)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=run_demo)
