"""Building Predictor inputs and upload parts from the finished run's cohort manifest; a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd

from mmdlr.serve import CaseFiles

MODALITIES = ("us", "mg", "mr")
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LOCAL_URL = "http://localhost"  # TestClient's base URL: a Host the server allows by default
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@contextmanager
def running_server(run_dir: Path, log: Path, *arguments: str) -> Iterator[tuple[str, int]]:
    """(base URL, process id) of `mmdlr serve` with the test token on a free loopback port, until exit."""
    port = free_port()
    with open(log, "w") as output:
        process = subprocess.Popen([sys.executable, "-m", "mmdlr.cli.main", "-q", "serve", "--model-dir", str(run_dir),
                                    "--host", HOST, "--port", str(port), "--token", TOKEN, *arguments],
                                   stdout=output, stderr=subprocess.STDOUT)
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"server exited:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"server did not start:\n{log.read_text()}"
                time.sleep(0.5)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def read_cohort(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "manifest.csv", dtype=str, keep_default_na=False)


def present(row: pd.Series) -> list[str]:
    return [modality for modality in MODALITIES if row[f"{modality}_image"]]


def case_files(row: pd.Series, modalities=None) -> dict[str, CaseFiles]:
    return {m: CaseFiles(Path(row[f"{m}_image"]), (Path(row[f"{m}_mask"]),)) for m in modalities or present(row)}


def upload_parts(row: pd.Series, modalities=None) -> list[tuple[str, tuple[str, bytes]]]:
    """Multipart ``files`` for httpx: (field, (client file name, content)) for each image and mask."""
    return [(f"{m}_{kind}", (Path(row[f"{m}_{kind}"]).name, Path(row[f"{m}_{kind}"]).read_bytes()))
            for m in modalities or present(row) for kind in ("image", "mask")]
