#!/usr/bin/env python
"""Load benchmark of `mmdlr serve`: a real server on 127.0.0.1, many concurrent clients, malformed requests
and decompression bombs among the valid ones.

The server is `mmdlr serve` with its defaults (``--max-concurrent 4 --max-queue 64 --max-spool-mb 512
--max-decoded-mb 256``) and a token, on a finished run (``--model-dir``; without it a small run is built once
under ``--work`` with ``mmdlr demo-data`` and ``mmdlr run`` and reused). ``--requests`` requests (default 1000)
go out from ``--concurrency`` client threads (default 64): ``--bombs`` of them (5%) decompression bombs (a
20000 x 20000 PNG of ~0.4 MB, a NIfTI declaring 512 MB in ~0.5 MB of gzip), ``--malformed`` (20%) cycling
through every kind of bad request below, the rest valid US cases for ``deep_us`` and ``radiomics_us``. Each
kind has the status it must get; a valid answer must equal `mmdlr predict` on the same files exactly.
A process of its own asks ``/health`` every 50 ms, for 10 s on the idle server first (what the machine's
load alone costs) and then during the load; the server's RSS is sampled every 100 ms.

Bounded: no new request after ``--time-limit`` seconds (default 300), each request times out after 120 s,
the server gets 180 s to start. Goals: no 5xx, no connection error, ``/health`` p99 under 100 ms, peak RSS
under 2.5 GB, every valid answer equal to `mmdlr predict`. Prints the table and writes
``docs/benchmarks/serve_load.csv`` (metric, value, unit, goal, met) with the load average at start and end.

    .venv/bin/python scripts/benchmarks/serve_load.py                    # the run of docs/benchmarks.md
    .venv/bin/python scripts/benchmarks/serve_load.py --quick            # 100 requests, 16 clients
    .venv/bin/python scripts/benchmarks/serve_load.py --model-dir RUN    # any finished run with US models
"""

from __future__ import annotations

import argparse
import collections
import gzip
import io
import itertools
import multiprocessing
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
import pandas as pd
import psutil
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
MODELS = ("deep_us", "radiomics_us")
# The small run built when no --model-dir is given: every model, quick training.
RUN_SETTINGS = ["deep.backbone=efficientnet_lite0", "deep.max_epochs=3", "deep.spatial_size=[64,64]",
                "deep.batch_size=8", "classifiers={lr: {C: [1.0]}, rf: {max_depth: [3]}}", "bootstrap.n=200",
                "inner_folds=2", "report.gradcam_cases=1", "deep.baselines=[]"]
REQUEST_TIMEOUT_S, START_TIMEOUT_S, HEALTH_EVERY_S, RSS_EVERY_S = 120, 180, 0.05, 0.1
IDLE_PROBING_S = 10  # /health probed on the idle server first: what the machine's load alone costs
GOALS = {"5xx responses": ("==", 0), "connection errors": ("==", 0), "health p99": ("<", 100),
         "peak RSS": ("<", 2.5), "valid answers different from mmdlr predict": ("==", 0),
         "wrong status for the kind": ("==", 0)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help="a finished `mmdlr run` (default: build a small one)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmdlr-bench/serve_load"))
    parser.add_argument("--csv", type=Path, default=REPO / "docs/benchmarks/serve_load.csv")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--malformed", type=float, default=0.20, help="share of malformed requests")
    parser.add_argument("--bombs", type=float, default=0.05, help="share of decompression bombs")
    parser.add_argument("--patients", type=int, default=12, help="distinct valid US cases")
    parser.add_argument("--time-limit", type=float, default=300, help="seconds after which no request is sent")
    parser.add_argument("--quick", action="store_true", help="100 requests from 16 clients")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra `mmdlr serve` argument")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.concurrency = 100, 16
    return args


def mmdlr(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "mmdlr.cli.main", "-q", *arguments]


def finished_run(args) -> Path:
    if args.model_dir:
        return args.model_dir
    cohort, run = args.work / "cohort", args.work / "run"
    if not (run / "results" / "models" / "index.csv").is_file():
        if not (cohort / "manifest.csv").is_file():
            subprocess.run(mmdlr("demo-data", str(cohort), "--patients", "40", "--seed", "21"), check=True)
        command = mmdlr("run", "--manifest", str(cohort / "manifest.csv"), "--config",
                        str(REPO / "configs/paper.yaml"), "--out", str(run))
        for item in RUN_SETTINGS:
            command += ["--set", item]
        subprocess.run(command, check=True)
    return run


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def nifti_bomb(shape=(512, 512, 512)) -> bytes:
    """A gzipped NIfTI whose header declares ``shape`` float32 (512 MB) of zeros, written a slab at a time."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9) as stream:
        stream.write(header.binaryblock + bytes(4))
        slab = bytes(4 * shape[0] * shape[1])
        for _ in range(shape[2]):
            stream.write(slab)
    return buffer.getvalue()


def request_kinds(run: Path, patients: pd.DataFrame, token: str) -> dict[str, tuple[dict, int]]:
    """Every malformed and bomb kind: (httpx request arguments, the status it must get)."""
    row = patients.iloc[0]
    image, mask = (Path(row[f"us_{kind}"]) for kind in ("image", "mask"))
    image_part, mask_part = ("us_image", (image.name, image.read_bytes())), ("us_mask", (mask.name, mask.read_bytes()))
    shape = np.asarray(Image.open(image)).shape[:2]
    dot = np.zeros(shape, np.uint8)
    dot[shape[0] // 2, shape[1] // 2] = 255
    cohort = pd.read_csv(run / "manifest.csv", dtype=str, keep_default_na=False)
    mr_mask = Path(cohort.loc[cohort["mr_image"] != "", "mr_mask"].iloc[0])
    auth = {"Authorization": f"Bearer {token}"}

    def post(model="deep_us", files=(image_part, mask_part), headers=auth, **extra):
        return {"method": "POST", "url": f"/infer/{model}", "files": list(files), "headers": headers, **extra}

    malformed = {
        "unknown field": (post(files=(image_part, mask_part, ("dbt_image", image_part[1]))), 400),
        "image without mask": (post(files=(image_part,)), 400),
        "empty file": (post(files=(image_part, ("us_mask", ("m.png", b"")))), 400),
        "empty mask": (post(files=(image_part, ("us_mask", ("m.png", png(np.zeros(shape, np.uint8)))))), 400),
        "one-pixel lesion (radiomics)": (post("radiomics_us", files=(image_part, ("us_mask", ("m.png", png(dot)))),
                                         ), 400),
        "corrupt image": (post(files=(("us_image", ("x.png", b"\x89PNG not really")), mask_part)), 400),
        "bad params JSON": (post(data={"params": "{modality"}), 400),
        "text in a file field": (post(files=(mask_part,), data={"us_image": "/etc/passwd"}), 400),
        "unknown model": (post("resnet"), 404),
        "missing modality": (post("deep_mg_us"), 422),
        "bad output": (post(params={"output": "nifti"}), 422),
        "wrong token": (post(headers={"Authorization": "Bearer wrong"}), 401),
        "not multipart": ({"method": "POST", "url": "/infer/deep_us", "json": {"us_image": "x"}, "headers": auth},
                          422),
    }
    bombs = {
        "PNG bomb 20000x20000": (post(files=(("us_image", ("b.png", png(np.zeros((20000, 20000), np.uint8)))),
                                             mask_part)), 400),
        "NIfTI bomb 512 MB": (post("deep_mr", files=(("mr_image", ("b.nii.gz", nifti_bomb())),
                                                     ("mr_mask", (mr_mask.name, mr_mask.read_bytes())))), 400),
    }
    return malformed, bombs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_server(run: Path, token: str, args, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = mmdlr("serve", "--model-dir", str(run), "--host", HOST, "--port", str(port), "--token", token,
                    *args.serve_arg)
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit(f"the server did not start:\n{log_path.read_text()[-3000:]}")


def probe_health(url: str, every: float, stop, results) -> None:
    """GET /health every ``every`` seconds until ``stop`` is set; put ([(sent at, latency in ms)], failures) on
    ``results``.

    Runs in a process of its own, so the client threads' contention for the GIL does not count in its times.
    """
    latencies, failures = [], []
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.wait(every):
            started = time.perf_counter()
            try:
                status = client.get("/health").status_code
            except httpx.TransportError as error:
                status = type(error).__name__
            latencies.append((time.time(), (time.perf_counter() - started) * 1000))
            if status != 200:
                failures.append(status)
    results.put((latencies, failures))


class Sampler(threading.Thread):
    """Calls ``sample()`` every ``every`` seconds until stopped."""

    def __init__(self, sample, every: float):
        super().__init__(daemon=True)
        self.sample, self.every, self.stop = sample, every, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.sample()


def main(argv=None) -> int:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load {load_start}", flush=True)
    run = finished_run(args)
    cohort = pd.read_csv(run / "manifest.csv", dtype=str, keep_default_na=False)
    patients = cohort[cohort["us_image"] != ""].head(args.patients)[["patient_id", "us_image", "us_mask"]]
    patients_csv = args.work / "patients.csv"
    patients.to_csv(patients_csv, index=False)
    expected = {}
    for model in MODELS:
        out = args.work / f"expected_{model}.csv"
        subprocess.run(mmdlr("predict", "--model-dir", str(run), "--manifest", str(patients_csv), "--out", str(out),
                             "--model", model), check=True)
        for row in pd.read_csv(out, dtype={"patient_id": str}).itertuples():
            expected[(row.patient_id, model)] = row.probability

    token = secrets.token_hex(16)
    malformed, bombs = request_kinds(run, patients, token)
    rng = np.random.default_rng(0)
    draws = rng.random(args.requests)
    malformed_cycle, bomb_cycle = itertools.cycle(malformed), itertools.cycle(bombs)
    valid_cycle = itertools.cycle(itertools.product(patients["patient_id"], MODELS))
    jobs = []
    for draw in draws:
        if draw < args.bombs:
            name = next(bomb_cycle)
            jobs.append((name, *bombs[name], None))
        elif draw < args.bombs + args.malformed:
            name = next(malformed_cycle)
            jobs.append((name, *malformed[name], None))
        else:
            patient_id, model = next(valid_cycle)
            row = patients.set_index("patient_id").loc[patient_id]
            files = [(f"us_{kind}", (Path(row[f"us_{kind}"]).name, Path(row[f"us_{kind}"]).read_bytes()))
                     for kind in ("image", "mask")]
            request = {"method": "POST", "url": f"/infer/{model}", "files": files,
                       "headers": {"Authorization": f"Bearer {token}"}}
            jobs.append((f"valid {model}", request, 200, (patient_id, model)))

    process, url = start_server(run, token, args, args.work / "server.log")
    server, rss = psutil.Process(process.pid), []
    rss_sampler = Sampler(lambda: rss.append(server.memory_info().rss), RSS_EVERY_S)
    spawn = multiprocessing.get_context("spawn")
    stop_probing, probed = spawn.Event(), spawn.Queue()
    prober = spawn.Process(target=probe_health, args=(url, HEALTH_EVERY_S, stop_probing, probed), daemon=True)
    results, deadline = [], time.monotonic() + args.time_limit
    prober.start()
    rss_sampler.start()
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    try:
        with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
            def send(job):
                kind, request, status, key = job
                if time.monotonic() > deadline:
                    return kind, status, "not sent", None, None
                started = time.perf_counter()
                try:
                    response = client.request(**request)
                except httpx.TransportError as error:
                    return kind, status, f"connection error {type(error).__name__}", None, None
                seconds = time.perf_counter() - started
                same = None
                if key is not None and response.status_code == 200:
                    same = response.json()["probability_malignant"] == expected[key]
                return kind, status, response.status_code, seconds, same

            time.sleep(IDLE_PROBING_S)
            load_started = time.time()
            with ThreadPoolExecutor(args.concurrency) as pool:
                results = list(pool.map(send, jobs))
            load_ended = time.time()
            wall = load_ended - load_started
    finally:
        rss_sampler.stop.set()
        stop_probing.set()
        probes, health_errors = probed.get(timeout=30)
        prober.join(10)
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    load_end = os.getloadavg()
    idle_ms = [ms for sent, ms in probes if sent < load_started]
    health_ms = [ms for sent, ms in probes if load_started <= sent <= load_ended]

    table = pd.DataFrame(results, columns=["kind", "expected", "status", "seconds", "same_as_predict"])
    sent = table[table["status"] != "not sent"]
    statuses = sent["status"].map(lambda s: s if isinstance(s, int) else -1)
    print("\nper kind: requests, statuses")
    for kind, group in sent.groupby("kind"):
        print(f"  {kind:<32} {len(group):>4}  {dict(collections.Counter(group['status']))}  "
              f"(expected {group['expected'].iloc[0]})")
    valid = sent[sent["expected"] == 200]
    rows = [("requests sent", len(sent), "", f"of {args.requests}; {args.concurrency} clients"),
            ("wall time", wall, "s", ""), ("throughput", len(sent) / wall, "requests/s", ""),
            ("valid requests answered 200", int((valid["status"] == 200).sum()), "", f"of {len(valid)}"),
            ("valid latency p50", valid["seconds"].quantile(0.5), "s", ""),
            ("valid latency p99", valid["seconds"].quantile(0.99), "s", ""),
            ("5xx responses", int((statuses >= 500).sum()), "", ""),
            ("503 responses", int((statuses == 503).sum()), "", "busy: queue or spool limit"),
            ("connection errors", int(sent["status"].astype(str).str.startswith("connection").sum()), "", ""),
            ("wrong status for the kind", int((sent["status"] != sent["expected"]).sum()), "", ""),
            ("valid answers different from mmdlr predict", int(valid["same_as_predict"].eq(False).sum()), "", ""),
            ("health p99, idle server", float(np.percentile(idle_ms, 99)), "ms",
             f"{len(idle_ms)} probes in {IDLE_PROBING_S} s before the load"),
            ("health probes", len(health_ms), "", f"during the load, every {HEALTH_EVERY_S * 1000:.0f} ms, "
                                                   f"from a process of their own"),
            ("health errors", len(health_errors), "", ""),
            ("health p50", float(np.percentile(health_ms, 50)), "ms", ""),
            ("health p99", float(np.percentile(health_ms, 99)), "ms", ""),
            ("health max", float(np.max(health_ms)), "ms", ""),
            ("peak RSS", max(rss) / 2**30, "GiB", f"server process, every {RSS_EVERY_S * 1000:.0f} ms"),
            ("load_1min at start", load_start[0], "load", f"{os.cpu_count()} CPUs"),
            ("load_1min at end", load_end[0], "load", "")]
    report = []
    print()
    for metric, value, unit, note in rows:
        goal = GOALS.get(metric)
        met = "" if goal is None else str(value == goal[1] if goal[0] == "==" else value < goal[1])
        goal_text = "" if goal is None else f"{goal[0]} {goal[1]}"
        report.append({"metric": metric, "value": round(float(value), 4), "unit": unit, "goal": goal_text,
                       "met": met, "note": note})
        print(f"  {metric:<44} {value:>10.4g} {unit:<11} {goal_text:<6} {met:<5} {note}")
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(report).to_csv(args.csv, index=False)
    print(f"\nwritten {args.csv}; server log {args.work / 'server.log'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
