"""`mmdlr ibsi`: IBSI 1 compliance of the radiomics features, measured on the IBSI digital phantom."""

from __future__ import annotations

import argparse
from pathlib import Path


def run_ibsi(args: argparse.Namespace) -> int:
    from mmdlr.atomic import write_csv, write_text
    from mmdlr.radiomics.ibsi import (PRESETS, compliance_markdown, compliance_summary, compliance_table,
                                      phantom_params, settings_text, unexpected)

    given = {"3d": args.params_3d, "2d": args.params_2d}
    presets = PRESETS | {key: Path(path) for key, path in given.items() if path}
    table = compliance_table(args.phantom_dir, presets)
    out = Path(args.out)
    csv = write_csv(table, out / "ibsi_compliance.csv")
    write_text(compliance_markdown(table), out / "ibsi_compliance.md")
    print("On the phantom: " + settings_text({f"{kind} ({presets[key].name})": phantom_params(presets[key])
                                              for kind, key in (("3D", "3d"), ("2D and 2.5D", "2d"))}))
    print(f"{compliance_summary(table)}: {csv}")
    surprises = unexpected(table)
    for row in surprises.itertuples():
        print(f"unexpected: {row.tag} ({row.pyradiomics_feature}) {row.value:.4g} vs {row.reference:g} ± "
              f"{row.tolerance:g}: match {row.match!r}, src/mmdlr/radiomics/ibsi_map.csv says {row.expected!r}")
    return 1 if len(surprises) else 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("ibsi", help="IBSI 1 compliance table of the radiomics features on the IBSI "
                                   "digital phantom (ibsi_compliance.csv, .md)")
    parser.add_argument("phantom_dir", help="folder with phantom.nii.gz, mask.nii.gz and "
                        "ibsi_1_reference_values_digital_phantom.csv")
    parser.add_argument("--out", required=True, help="folder for ibsi_compliance.csv and ibsi_compliance.md")
    parser.add_argument("--params-3d", help="PyRadiomics params for the 3D features (default: "
                        "configs/radiomics_ibsi.yaml)")
    parser.add_argument("--params-2d", help="PyRadiomics params with force2D for the 2D (slice by slice) and 2.5D "
                        "features (default: configs/radiomics_ibsi_2d.yaml)")
    parser.set_defaults(handler=run_ibsi)
