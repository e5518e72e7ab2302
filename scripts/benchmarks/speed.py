#!/usr/bin/env python
"""Speed benchmarks of mmdlr on this machine (CPU), through the package's public API and CLI.

Parts (``--parts``, default all, in this order; ``e2e`` and ``e2e_busi`` are meant to run last):

``matmul``     achievable float32 (and bfloat16) GFLOP/s of a large ``torch.matmul``; the ResNet-50 images/s limit
               it implies (FLOPs of one 224x224 image counted with ``torch.utils.flop_counter``, and the 4.1 figure).
``deep``       deep-feature images/s: the bundle's ``inference.json`` end to end (``run_bundle_config``, the
               call of ``mmdlr run``: float32, channels-last, batch 8) and its settings (``precision``,
               ``batch_size``, ``num_workers``), its preprocessing alone, ``mmdlr.deep.extract_features`` (the
               bundle's forward pass) and a plain PyTorch eval loop over the same preprocessed ROIs; then
               variants of the plain loop: ``torch.inference_mode``, channels-last, ``torch.set_num_threads``,
               batch size, bf16 autocast (with the max abs difference of the features from the plain loop).
``precision``  float32 vs bfloat16 deep features (``mmdlr.deep.extract_features``, ``precision=...``) of
               ``--precision-rois`` BUSI ROIs for EfficientNet-Lite0 (ImageNet) and ResNet-50 (random weights):
               images/s, per-feature error relative to the feature's range, and the 5-fold AUC of a
               standardised logistic regression on each (does the rounding change what the features tell?).
``head``       head training: cached features (``mmdlr.deep.FeatureDataset``, the bundle's frozen mode) vs
               the literal frozen forward pass of every image in every epoch; measured for a few epochs,
               extrapolated to 200. Then the bundle's ``train.json`` itself (200 epochs, validation every
               epoch) with metrics on whole batches, as shipped, vs MONAI's default per-item post-processing
               (``decollate: true``), set back through config overrides.
``radiomics``  ``mmdlr.radiomics.extract.extract_cohort`` ROIs/s with ``n_jobs=1`` and ``n_jobs=2``, each on
               freshly cropped ROIs (``mmdlr crop``) so no feature cache is reused.
``e2e``        ``mmdlr demo-data DIR --patients 322`` then ``mmdlr run --config configs/paper.yaml --set
               deep.weights=none --set deep.baseline_weights=none`` (the paper's networks, ResNet-50 and the
               ResNet-101/DenseNet-121 baselines, at their real cost; their ImageNet weights cannot be downloaded
               here and do not change the time) under ``/usr/bin/time -v``, with psutil polling of the whole
               process tree: wall time per stage (``RUN/stages/*.json``), total, peak memory.
``e2e_busi``   ``mmdlr run --config configs/nested_cv.yaml`` of BUSI (``--busi-images``, all 616 by default,
               duplicates removed), with EfficientNet-Lite0 (ImageNet) and with ResNet-50 (random weights),
               measured as ``e2e``.

ROIs are BUSI images (``--busi``, read in place) through ``mmdlr import-busi``. Prints each table and writes
``docs/benchmarks/speed.csv`` (benchmark, variant, value, unit). Timings on a shared machine are noisy: compare
ratios measured within one run, and note the load (``load_1min`` rows).

    .venv/bin/python scripts/benchmarks/speed.py                        # everything (see docs/benchmarks.md)
    .venv/bin/python scripts/benchmarks/speed.py --quick                # smoke run (~2 min idle, longer under load)
    .venv/bin/python scripts/benchmarks/speed.py --parts e2e --csv ...  # one part
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
PARTS = ("matmul", "deep", "precision", "head", "radiomics", "e2e", "e2e_busi")
RESNET50_GFLOP_NOMINAL = 4.1  # the usual figure; it counts multiply-accumulates
ROWS: list[dict] = []


def record(benchmark: str, variant: str, value: float, unit: str) -> None:
    ROWS.append({"benchmark": benchmark, "variant": variant, "value": value, "unit": unit})
    print(f"  {benchmark:<12} {variant:<58} {value:>12.4g} {unit}", flush=True)


def load() -> float:
    return os.getloadavg()[0]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run (small sizes, ~2 minutes)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {PARTS}")
    parser.add_argument("--busi", type=Path, default=Path("/work/shared/data/busi"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmdlr-bench/speed"))
    parser.add_argument("--csv", type=Path, default=REPO / "docs/benchmarks/speed.csv")
    parser.add_argument("--images", type=int, default=96, help="ROIs for the deep and head parts")
    parser.add_argument("--radiomics-rois", type=int, default=120, help="ROIs for the radiomics part")
    parser.add_argument("--precision-rois", type=int, default=320, help="ROIs for the precision part")
    parser.add_argument("--backbone", default="resnet50", help="backbone of the deep and head parts")
    parser.add_argument("--repeats", type=int, default=2, help="timing repeats per deep variant (best is kept)")
    parser.add_argument("--e2e-patients", type=int, default=322)
    parser.add_argument("--busi-images", type=int, default=616, help="images of the e2e_busi part (616: all)")
    parser.add_argument("--e2e-set", action="append", default=[],
                        help="extra --set for the end-to-end mmdlr run (repeatable)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.radiomics_rois, args.repeats, args.e2e_patients, args.precision_rois = 8, 12, 1, 40, 40
        args.busi_images = 40
        args.e2e_set = ["deep.max_epochs=3", "classifiers=[lr]", "bootstrap.n=200"] + args.e2e_set
    return args


def busi_manifest(args, rows: int, name: str) -> Path:
    """The first ``rows`` images of ``mmdlr import-busi`` (duplicates removed), both classes interleaved."""
    args.work.mkdir(parents=True, exist_ok=True)
    full = args.work / "busi.csv"
    if not full.is_file():
        subprocess.run([sys.executable, "-m", "mmdlr.cli.main", "-q", "import-busi", str(args.busi), str(full)],
                       check=True)
    table = pd.read_csv(full, dtype=str, keep_default_na=False)
    parts = [part.reset_index(drop=True) for _, part in table.groupby("label")]
    mixed = pd.concat(parts).sort_index(kind="stable").head(rows)  # benign_i, malignant_i, ...
    path = args.work / f"{name}.csv"
    mixed.to_csv(path, index=False)
    return path


# ------------------------------------------------------------------------------------------ matmul

def bench_matmul(args) -> float:
    import torch

    n = 1024 if args.quick else 4096
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = 0.0
    for _ in range(3 if args.quick else 5):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    record("matmul", f"float32 {n}x{n}, {torch.get_num_threads()} threads, best of runs", best, "GFLOP/s")
    a, b = a.bfloat16(), b.bfloat16()
    torch.matmul(a, b)
    best_bf16 = timed(lambda: torch.matmul(a, b), 3 if args.quick else 5)[0]
    record("matmul", f"bfloat16 {n}x{n} (AMX where the CPU has it), best of runs", 2 * n ** 3 / best_bf16 / 1e9,
           "GFLOP/s")
    flop = resnet50_flop()
    record("matmul", "ResNet-50 forward FLOP per 224x224 image (flop_counter, 2 per MAC)", flop / 1e9, "GFLOP")
    record("matmul", f"images/s limit = GFLOP/s / {RESNET50_GFLOP_NOMINAL} (brief's formula)",
           best / RESNET50_GFLOP_NOMINAL, "images/s")
    record("matmul", "images/s limit = GFLOP/s / counted FLOP", best / (flop / 1e9), "images/s")
    return best


def resnet50_flop() -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mmdlr.deep import DeepClassifier

    network = DeepClassifier("resnet50").eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        network.features(torch.zeros(1, 3, 224, 224))
    return float(counter.get_total_flops())


# ------------------------------------------------------------------------------------------ deep

def bundle_dataset(manifest: Path, backbone: str):
    """The bundle's own inference dataset (``inference.json``'s ``dataset``: load, crop, scale, resize)."""
    from monai.bundle import ConfigParser

    from mmdlr.pipeline.bundle import CONFIGS

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser.update({"manifest": str(manifest), "modality": "us", "backbone": backbone})
    return parser.get_parsed_content("dataset")


def timed(function, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def plain_loop(network, images, batch_size: int, inference_mode=False, channels_last=False, bf16=False):
    """The plain PyTorch eval loop: ``network.features`` batch by batch over a preprocessed tensor."""
    import torch

    context = torch.inference_mode if inference_mode else torch.no_grad
    outputs = []
    with context():
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            if bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    outputs.append(network.features(batch).float())
            else:
                outputs.append(network.features(batch))
    return torch.cat(outputs)


def bench_deep(args) -> None:
    import torch

    from mmdlr.deep import DeepClassifier, extract_features
    from mmdlr.pipeline.bundle import run_bundle_config

    manifest = busi_manifest(args, args.images, f"busi_first{args.images}")
    n = args.images
    threads = torch.get_num_threads()
    record("deep", f"load_1min at start ({n} ROIs, {args.backbone}, {threads} torch threads)", load(), "load")
    # a checkpoint for inference.json (whole-network state dict, as train.json writes it)
    out = args.work / f"bundle_{args.backbone}"
    checkpoint = out / "models" / "us" / "model.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    network = DeepClassifier(args.backbone).eval()
    torch.save(network.state_dict(), checkpoint)

    def bundle(**overrides):
        run_bundle_config("inference", manifest=str(manifest), modality="us", output_dir=str(out),
                          backbone=args.backbone, output_path=str(out / "deep_us.csv"), **overrides)

    bundle_variants = [("bundle inference.json end to end (as shipped: float32, channels-last, batch 8)", {}),
                       ("bundle inference.json end to end, precision=bfloat16", {"precision": "bfloat16"}),
                       ("bundle inference.json end to end, batch_size=32", {"batch_size": 32}),
                       ("bundle inference.json end to end, num_workers=2", {"num_workers": 2})]
    if args.quick:
        bundle_variants = bundle_variants[:2]
    best = {name: float("inf") for name, _ in bundle_variants}
    for _ in range(1 if args.quick else 2):  # interleaved rounds, best kept: the load drifts
        for name, options in bundle_variants:
            best[name] = min(best[name], timed(lambda: bundle(**options), 1)[0])
    for name, _ in bundle_variants:
        record("deep", name, n / best[name], "images/s")

    dataset = bundle_dataset(manifest, args.backbone)
    dataset[0]
    for count in sorted({threads, 1}, reverse=True):
        torch.set_num_threads(count)
        seconds, items = timed(lambda: [dataset[i] for i in range(len(dataset))], 1)
        record("deep", f"bundle preprocessing only (load, crop, scale, resize, normalise), {count} torch threads",
               n / seconds, "images/s")
    torch.set_num_threads(threads)
    images = torch.stack([item["image"] for item in items])
    dataset_items = [{"image": item["image"], **{k: item[k] for k in ("patient_id", "label", "split", "group")}}
                     for item in items]
    reference = plain_loop(network, images, 32)
    scale = reference.abs().max().item()

    channels_last_network = DeepClassifier(args.backbone).eval()
    channels_last_network.load_state_dict(network.state_dict())
    channels_last_network = channels_last_network.to(memory_format=torch.channels_last)

    def one_thread(function):
        def run():
            torch.set_num_threads(1)
            try:
                return function()
            finally:
                torch.set_num_threads(threads)
        return run

    variants = {
        "mmdlr.deep.extract_features (bundle forward path: channels-last), batch 8":
            lambda: torch.from_numpy(extract_features(network, dataset_items, 8).features),
        "plain loop, no_grad, batch 32": lambda: plain_loop(network, images, 32),
        "plain loop, inference_mode, batch 32": lambda: plain_loop(network, images, 32, inference_mode=True),
        "plain loop, channels_last (weights and input), batch 32":
            lambda: plain_loop(channels_last_network, images, 32, channels_last=True),
        "plain loop, channels_last input only, batch 32": lambda: plain_loop(network, images, 32, channels_last=True),
        "plain loop, channels_last, batch 8": lambda: plain_loop(channels_last_network, images, 8, channels_last=True),
        "plain loop, batch 8": lambda: plain_loop(network, images, 8),
        "plain loop, batch 64": lambda: plain_loop(network, images, 64),
        "plain loop, bf16 autocast, batch 32": lambda: plain_loop(network, images, 32, bf16=True),
        "plain loop, bf16 autocast + channels_last, batch 32":
            lambda: plain_loop(channels_last_network, images, 32, channels_last=True, bf16=True),
        "plain loop, bf16 autocast + channels_last, batch 8":
            lambda: plain_loop(channels_last_network, images, 8, channels_last=True, bf16=True),
        "plain loop, batch 32, torch.set_num_threads(1)": one_thread(lambda: plain_loop(network, images, 32)),
        "plain loop, channels_last, batch 32, torch.set_num_threads(1)":
            one_thread(lambda: plain_loop(channels_last_network, images, 32, channels_last=True)),
    }
    if args.quick:
        quick = ("plain loop, no_grad, batch 32", "plain loop, channels_last, batch 8",
                 "plain loop, bf16 autocast + channels_last, batch 8")
        variants = {name: variants[name] for name in [*list(variants)[:1], *quick]}
    best, diffs = {name: float("inf") for name in variants}, {}
    for _ in range(args.repeats):  # interleaved rounds, best kept
        for name, function in variants.items():
            seconds, features = timed(function, 1)
            best[name] = min(best[name], seconds)
            diffs[name] = (features - reference).abs().max().item()
    for name in variants:
        record("deep", name, n / best[name], "images/s")
        record("deep", f"{name}: max abs diff of features vs plain loop (feature max {scale:.3g})", diffs[name], "abs")
    record("deep", "load_1min at end", load(), "load")


# ------------------------------------------------------------------------------------------ precision

def bench_precision(args) -> None:
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mmdlr.deep import DeepClassifier, extract_features, load_pretrained

    manifest = busi_manifest(args, args.precision_rois, f"busi_first{args.precision_rois}")
    record("precision", f"load_1min at start ({args.precision_rois} BUSI ROIs)", load(), "load")
    for backbone, weights in (("efficientnet_lite0", "imagenet"), ("resnet50", "none")):
        dataset = bundle_dataset(manifest, backbone)
        items = [dataset[i] for i in range(len(dataset))]
        torch.manual_seed(0)
        network = load_pretrained(DeepClassifier(backbone), weights)
        tag = f"{backbone} ({weights} weights)"
        features = {}
        for precision in ("float32", "bfloat16"):
            extract_features(network, items[:8], precision=precision)  # warm-up
            seconds, result = timed(lambda: extract_features(network, items, precision=precision), 1)
            features[precision] = result.features
            record("precision", f"{tag}, {precision}: extract_features", len(items) / seconds, "images/s")
        exact, rounded = features["float32"], features["bfloat16"]
        spread = exact.max(axis=0) - exact.min(axis=0)
        varying = spread > 0
        relative = np.abs(rounded - exact)[:, varying].max(axis=0) / spread[varying]
        record("precision", f"{tag}: median over features of max |bf16 - fp32| / feature range",
               float(np.median(relative)), "ratio")
        record("precision", f"{tag}: 95th percentile over features of the same", float(np.quantile(relative, 0.95)),
               "ratio")
        labels = np.asarray(result.meta["label"])
        folds = StratifiedKFold(5, shuffle=True, random_state=0)
        for precision, values in features.items():
            model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))
            prob = cross_val_predict(model, values, labels, cv=folds, method="predict_proba")[:, 1]
            record("precision", f"{tag}, {precision}: 5-fold AUC, logistic regression (C 0.01) on the features",
                   roc_auc_score(labels, prob), "AUC")


# ------------------------------------------------------------------------------------------ head

def bench_head(args, epochs_measured: int) -> None:
    import torch
    from monai.data import DataLoader
    from torch import nn

    from mmdlr.deep import DeepClassifier, FeatureDataset

    manifest = busi_manifest(args, args.images, f"busi_first{args.images}")
    dataset = bundle_dataset(manifest, args.backbone)
    items = [dataset[i] for i in range(len(dataset))]
    n = len(items)
    record("head", f"load_1min at start ({n} ROIs, {args.backbone})", load(), "load")
    torch.manual_seed(0)
    network = DeepClassifier(args.backbone)  # frozen backbone, trainable head (the bundle's frozen mode)
    loss_function = nn.CrossEntropyLoss()

    def epoch(loader, forward):
        optimizer = torch.optim.SGD(network.head.parameters(), lr=0.001)
        for batch in loader:
            optimizer.zero_grad()
            loss = loss_function(forward(batch["image"]), torch.as_tensor(batch["label"]))
            loss.backward()
            optimizer.step()

    network.train()
    start = time.perf_counter()
    cached = FeatureDataset(network, items, batch_size=32)
    cache_seconds = time.perf_counter() - start
    head_loader = DataLoader(cached, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    head_epochs = 20
    start = time.perf_counter()
    for _ in range(head_epochs):
        epoch(head_loader, network.head)
    head_epoch = (time.perf_counter() - start) / head_epochs

    image_loader = DataLoader(items, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for _ in range(epochs_measured):
        epoch(image_loader, network)  # backbone frozen: no gradients there, but a full forward every epoch
    literal_epoch = (time.perf_counter() - start) / epochs_measured

    record("head", "cached: feature caching (one frozen forward pass)", cache_seconds, "s")
    record("head", f"cached: one head epoch (mean of {head_epochs})", head_epoch, "s")
    record("head", f"literal: one epoch with frozen forward pass (mean of {epochs_measured})", literal_epoch, "s")
    for epochs in (epochs_measured, 200):
        cached_total = cache_seconds + epochs * head_epoch
        literal_total = epochs * literal_epoch
        tag = "measured epochs" if epochs == epochs_measured else "extrapolated"
        record("head", f"{epochs} epochs cached ({tag})", cached_total, "s")
        record("head", f"{epochs} epochs literal ({tag})", literal_total, "s")
        record("head", f"{epochs} epochs speed-up literal / cached ({tag})", literal_total / cached_total, "x")

    from mmdlr.pipeline.bundle import run_bundle_config

    loss = "$monai.handlers.from_engine(['loss'], first=True)"
    per_item = {"train#trainer#decollate": True, "validate#evaluator#decollate": True,
                **{f"train#postprocessing#transforms#{i}#dim": 0 for i in (0, 2, 3)},
                **{f"train#handlers#{i}#output_transform": loss for i in (1, 2)}}
    epochs = 3 if args.quick else 200
    for name, overrides in (("metrics on whole batches (as shipped)", {}),
                            ("MONAI default per-item post-processing (decollate)", per_item)):
        start = time.perf_counter()
        run_bundle_config("train", "train", manifest=str(manifest), modality="us", backbone=args.backbone,
                          output_dir=str(args.work / "head_bundle"), weights="none", max_epochs=epochs, **overrides)
        record("head", f"bundle train.json, frozen, {epochs} epochs, {name}", time.perf_counter() - start, "s")


# ------------------------------------------------------------------------------------------ radiomics

def bench_radiomics(args) -> None:
    from mmdlr.radiomics.extract import extract_cohort

    manifest = busi_manifest(args, args.radiomics_rois, f"busi_first{args.radiomics_rois}")
    record("radiomics", "load_1min at start", load(), "load")
    for n_jobs in (1, 2):
        out = args.work / f"radiomics_jobs{n_jobs}"
        shutil.rmtree(out, ignore_errors=True)  # fresh ROI folder: no cached features
        subprocess.run([sys.executable, "-m", "mmdlr.cli.main", "-q", "crop", str(manifest), "--out", str(out)],
                       check=True)
        index = pd.read_csv(out / "roi" / "roi_index.csv", dtype={"patient_id": str, "group": str, "split": str},
                            keep_default_na=False)
        start = time.perf_counter()
        extract_cohort(index, out, "2d", n_jobs=n_jobs, progress=False)
        seconds = time.perf_counter() - start
        record("radiomics", f"extract_cohort 2D, n_jobs={n_jobs}, fresh cache ({len(index)} ROIs)",
               len(index) / seconds, "ROIs/s")
        start = time.perf_counter()
        extract_cohort(index, out, "2d", n_jobs=n_jobs, progress=False)
        record("radiomics", f"extract_cohort 2D, n_jobs={n_jobs}, cached rerun",
               len(index) / (time.perf_counter() - start), "ROIs/s")
    record("radiomics", "load_1min at end", load(), "load")


# ------------------------------------------------------------------------------------------ end to end

def _tree_rss(process) -> tuple[int, int]:
    import psutil

    total, largest = 0, 0
    for member in [process, *process.children(recursive=True)]:
        try:
            rss = member.memory_info().rss
        except psutil.Error:
            continue
        total, largest = total + rss, max(largest, rss)
    return total, largest


def timed_run(benchmark: str, label: str, command: list[str], run: Path, prefix: str = "") -> None:
    """Run ``mmdlr run`` (``command``, writing ``run``) under ``/usr/bin/time -v`` with psutil polling of the process
    tree; record each stage's wall time (``run/stages/*.json``), the total, peak memory and the load, as variants
    starting with ``prefix``."""
    import psutil

    shutil.rmtree(run, ignore_errors=True)
    record(benchmark, f"load_1min at start ({label})", load(), "load")
    print("  $", " ".join(command), flush=True)
    peak_total, peak_largest, loads = 0, 0, []
    start = time.perf_counter()
    process = subprocess.Popen(["/usr/bin/time", "-v", *command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    watched = psutil.Process(process.pid)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()
    while process.poll() is None:
        total, largest = _tree_rss(watched)
        peak_total, peak_largest = max(peak_total, total), max(peak_largest, largest)
        loads.append(load())
        time.sleep(0.5)
    reader.join()
    wall = time.perf_counter() - start
    if process.returncode != 0:
        print("".join(output[-60:]))
        raise SystemExit(f"mmdlr run failed with exit status {process.returncode}")
    max_rss_kb = next((int(line.split(":")[1]) for line in output if "Maximum resident set size" in line), 0)
    for path in sorted((run / "stages").glob("*.json"), key=lambda p: json.loads(p.read_text()).get("seconds", 0)):
        stage = json.loads(path.read_text())
        record(benchmark, f"{prefix}stage {stage['name']}", stage["seconds"], "s")
    record(benchmark, f"{prefix}total wall time (mmdlr run, measured around the process)", wall, "s")
    record(benchmark, f"{prefix}peak RSS, whole process tree (psutil, 0.5 s polling)", peak_total / 2 ** 30, "GiB")
    record(benchmark, f"{prefix}peak RSS, largest single process (psutil)", peak_largest / 2 ** 30, "GiB")
    record(benchmark, f"{prefix}maximum resident set size (/usr/bin/time -v)", max_rss_kb / 2 ** 20, "GiB")
    record(benchmark, f"{prefix}load_1min mean during the run", float(np.mean(loads)) if loads else load(), "load")
    record(benchmark, f"{prefix}ran at (unix time)", time.time(), "s")


def mmdlr_run(manifest: Path, config: str, run: Path, sets: list[str]) -> list[str]:
    command = [sys.executable, "-m", "mmdlr.cli.main", "-q", "run", "--manifest", str(manifest),
               "--config", str(REPO / config), "--out", str(run)]
    for item in sets:
        command += ["--set", item]
    return command


def bench_e2e(args) -> None:
    cohort, run = args.work / f"e2e_cohort_{args.e2e_patients}", args.work / f"e2e_run_{args.e2e_patients}"
    if not (cohort / "manifest.csv").is_file():
        subprocess.run([sys.executable, "-m", "mmdlr.cli.main", "-q", "demo-data", str(cohort), "--patients",
                        str(args.e2e_patients)], check=True)
    sets = ["deep.weights=none", "deep.baseline_weights=none", *args.e2e_set]
    timed_run("e2e", f"{args.e2e_patients} patients; --set {' '.join(sets)}",
              mmdlr_run(cohort / "manifest.csv", "configs/paper.yaml", run, sets), run)


def bench_e2e_busi(args) -> None:
    """``mmdlr run`` of BUSI (``--busi-images``, duplicates removed) under configs/nested_cv.yaml, once with
    EfficientNet-Lite0 (its ImageNet weights, installed offline) and once with the config's ResNet-50 (random
    weights: its ImageNet file cannot be downloaded here, and weights do not change the time)."""
    manifest = busi_manifest(args, args.busi_images, f"busi_{args.busi_images}")
    for backbone, sets in (("efficientnet_lite0", ["deep.backbone=efficientnet_lite0"]),
                           ("resnet50", ["deep.weights=none"])):
        sets = [*sets, *args.e2e_set]
        run = args.work / f"e2e_busi_{backbone}"
        timed_run("e2e_busi", f"{backbone}, {args.busi_images} images; --set {' '.join(sets)}",
                  mmdlr_run(manifest, "configs/nested_cv.yaml", run, sets), run, f"{backbone}: ")


def main(argv=None) -> int:
    args = parse_args(argv)
    parts = [part for part in args.parts.split(",") if part]
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown part(s) {sorted(unknown)}; choose from {PARTS}")
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()}", flush=True)
    for part in PARTS:
        if part not in parts:
            continue
        print(f"\n== {part}", flush=True)
        started = time.perf_counter()
        if part == "matmul":
            bench_matmul(args)
        elif part == "deep":
            bench_deep(args)
        elif part == "precision":
            bench_precision(args)
        elif part == "head":
            bench_head(args, 1 if args.quick else 2)
        elif part == "radiomics":
            bench_radiomics(args)
        elif part == "e2e":
            bench_e2e(args)
        else:
            bench_e2e_busi(args)
        print(f"  ({part}: {time.perf_counter() - started:.0f} s)", flush=True)
    frame = pd.DataFrame(ROWS, columns=["benchmark", "variant", "value", "unit"])
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    if args.csv.is_file() and set(parts) != set(PARTS):  # a partial run replaces only its own benchmarks
        old = pd.read_csv(args.csv)
        frame = pd.concat([old[~old["benchmark"].isin(frame["benchmark"].unique())], frame], ignore_index=True)
    frame.to_csv(args.csv, index=False, float_format="%.6g")
    print(f"\nwrote {args.csv} ({len(frame)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
