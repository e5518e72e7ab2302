"""`mmdlr predict` (a manifest of new patients -> CSV) and `mmdlr serve` (the HTTP server), one Predictor."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from typing import TYPE_CHECKING

from mmdlr.io.limits import SERVE_MAX_DECODED_MB, set_max_decoded_mb
from mmdlr.serve.settings import LOOPBACK_HOSTS, ServeSettings

if TYPE_CHECKING:
    from mmdlr.serve.predictor import Predictor

log = logging.getLogger("mmdlr")
TOKEN_ENV = "MMDLR_TOKEN"


def _predictor(args: argparse.Namespace) -> Predictor:
    import torch

    from mmdlr.serve.predictor import Predictor

    # Serve and predict use the same intra-op thread count so their probabilities are bit-identical.
    torch.set_num_threads(args.torch_threads)
    return Predictor.from_run_dir(args.model_dir)


def run_predict(args: argparse.Namespace) -> int:
    from mmdlr.atomic import write_csv
    from mmdlr.serve.batch import predict_manifest
    from mmdlr.serve.run_folder import UnknownModelError

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


def _allowed_hosts(args: argparse.Namespace) -> tuple[str, ...]:
    """``--allowed-hosts``, or the loopback names when bound to loopback; required for any other address."""
    if args.allowed_hosts:
        hosts = tuple(name.strip() for name in args.allowed_hosts.split(",") if name.strip())
        if "*" in hosts:
            log.warning("--allowed-hosts '*': any Host header is accepted (DNS rebinding is then possible)")
        return hosts
    if _is_loopback(args.host):
        return LOOPBACK_HOSTS
    raise ValueError(f"--allowed-hosts is required with --host {args.host}: list the names clients use to "
                     f"reach the server (e.g. --allowed-hosts mmdlr.example.org,10.0.0.5), or '*' for any")


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mmdlr.serve.app import create_app

    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not token and not _is_loopback(args.host):
        log.warning("serving on %s without a token: anyone who can reach it may use it (set --token or %s)",
                    args.host, TOKEN_ENV)
    settings = ServeSettings(token=token, max_upload_mb=args.max_upload_mb, max_concurrent=args.max_concurrent,
                             max_queue=args.max_queue, max_spool_mb=args.max_spool_mb,
                             body_timeout=args.body_timeout, allowed_hosts=_allowed_hosts(args))
    set_max_decoded_mb(args.max_decoded_mb)
    app = create_app(_predictor(args), settings)
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


def _count(text: str) -> int:
    """An argparse type: an integer of at least zero."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", required=True, help="a finished `mmdlr run` output folder")
    parser.add_argument("--torch-threads", type=_positive(int), default=1,
                        help="torch intra-op threads (default 1; the same in serve and predict gives identical "
                             "probabilities)")


def register(subparsers) -> None:
    predict = subparsers.add_parser("predict", help="predict a manifest of new patients with a run's saved models")
    _add_common(predict)
    predict.add_argument("--manifest", required=True,
                         help="CSV with patient_id and <mod>_image/<mod>_mask columns (labels not needed; center "
                              "for a run trained with ComBat)")
    predict.add_argument("--out", required=True, help="output CSV: patient_id, model, probability, "
                                                      "label_predicted, modalities_used")
    predict.add_argument("--model", help="only this model (e.g. deep_us, fusion_stacking; GET /info/ lists them); "
                                         "default: every model each patient's modalities allow")
    predict.set_defaults(handler=run_predict)

    defaults = ServeSettings()
    serve = subparsers.add_parser("serve", help="serve a run's saved models over HTTP (MONAI Label-style API)")
    _add_common(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    serve.add_argument("--token", help=f"bearer token required on every route but /health (or env {TOKEN_ENV})")
    serve.add_argument("--max-upload-mb", type=_positive(float), default=defaults.max_upload_mb,
                       help=f"largest request body (default {defaults.max_upload_mb:g} MB)")
    serve.add_argument("--max-concurrent", type=_positive(int), default=defaults.max_concurrent,
                       help=f"requests computed at the same time (default {defaults.max_concurrent}; others wait)")
    serve.add_argument("--max-queue", type=_count, default=defaults.max_queue,
                       help=f"inference requests that may wait beyond those computing (default "
                            f"{defaults.max_queue}); when full a request gets 503 with Retry-After before its "
                            f"body is read")
    serve.add_argument("--max-spool-mb", type=_positive(float), default=defaults.max_spool_mb,
                       help=f"request bytes all admitted inference requests may hold at once, in memory or "
                            f"spooled to temporary files (default {defaults.max_spool_mb:g} MB; 503 beyond)")
    serve.add_argument("--body-timeout", type=_positive(float), default=defaults.body_timeout,
                       help=f"seconds an admitted inference request may take to send its whole body (default "
                            f"{defaults.body_timeout:g}; 408 beyond), so stalled uploads cannot hold the queue")
    serve.add_argument("--max-decoded-mb", type=_positive(float), default=SERVE_MAX_DECODED_MB,
                       help=f"largest decoded image an upload may declare in its header (default "
                            f"{SERVE_MAX_DECODED_MB:g} MB; 400 beyond, nothing decoded)")
    serve.add_argument("--allowed-hosts",
                       help="comma-separated Host header names to answer (400 for others); default the loopback "
                            "names localhost,127.0.0.1,[::1] when --host is loopback, required otherwise "
                            "('*' accepts any)")
    serve.set_defaults(handler=run_serve)
