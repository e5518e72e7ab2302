"""`mmdlr predict` (a manifest of new patients -> CSV) and `mmdlr serve` (the HTTP server), one Predictor."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys

import torch

from mmdlr.atomic import write_csv
from mmdlr.serve.batch import predict_manifest
from mmdlr.serve.predictor import Predictor
from mmdlr.serve.run_folder import UnknownModelError

log = logging.getLogger("mmdlr")
TOKEN_ENV = "MMDLR_TOKEN"


def _predictor(args: argparse.Namespace) -> Predictor:
    # Serve and predict use the same intra-op thread count so their probabilities are bit-identical.
    torch.set_num_threads(args.torch_threads)
    return Predictor.from_run_dir(args.model_dir)


def run_predict(args: argparse.Namespace) -> int:
    predictor = _predictor(args)
    try:
        table = predict_manifest(predictor, args.manifest, args.model, progress=not args.quiet)
    except UnknownModelError as error:
        print(f"mmdlr predict: error: {error}", file=sys.stderr)
        return 2
    write_csv(table, args.out)
    print(f"{len(table)} prediction(s) of {table['patient_id'].nunique()} patient(s) written to {args.out}")
    return 0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mmdlr.serve.app import create_app

    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not token and not _is_loopback(args.host):
        log.warning("serving on %s without a token: anyone who can reach it may use it (set --token or %s)",
                    args.host, TOKEN_ENV)
    app = create_app(_predictor(args), token, args.max_upload_mb, args.max_concurrent)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info")
    return 0


def _positive(kind):
    """An argparse type: ``kind`` (int or float) greater than zero."""
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, not {text}")
        return value
    return parse


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", required=True, help="a finished `mmdlr run` output folder")
    parser.add_argument("--torch-threads", type=_positive(int), default=1,
                        help="torch intra-op threads (default 1; the same in serve and predict gives identical "
                             "probabilities)")


def register(subparsers) -> None:
    predict = subparsers.add_parser("predict", help="predict a manifest of new patients with a run's saved models")
    _add_common(predict)
    predict.add_argument("--manifest", required=True,
                         help="CSV with patient_id and <mod>_image/<mod>_mask columns (labels not needed)")
    predict.add_argument("--out", required=True, help="output CSV: patient_id, model, probability, "
                                                      "label_predicted, modalities_used")
    predict.add_argument("--model", help="only this model (e.g. deep_us, fusion_stacking; GET /info/ lists them); "
                                         "default: every model each patient's modalities allow")
    predict.set_defaults(handler=run_predict)

    serve = subparsers.add_parser("serve", help="serve a run's saved models over HTTP (MONAI Label-style API)")
    _add_common(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--token", help=f"bearer token required on every route but /health (or env {TOKEN_ENV})")
    serve.add_argument("--max-upload-mb", type=_positive(float), default=100,
                       help="largest request body (default 100 MB)")
    serve.add_argument("--max-concurrent", type=_positive(int), default=4,
                       help="requests computed at the same time (default 4; others wait)")
    serve.set_defaults(handler=run_serve)
