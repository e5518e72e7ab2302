"""`mmdlr serve`'s start-up: the decoded-size limit, the allowed Host names, and settings that cannot work."""

from __future__ import annotations

import pytest
import uvicorn
from fastapi.testclient import TestClient

from mmdlr.cli.main import main
from mmdlr.io.limits import ENVIRONMENT_KEY, SERVE_MAX_DECODED_MB, max_decoded_mb


@pytest.fixture
def started(monkeypatch) -> dict:
    """What `mmdlr serve` hands to uvicorn.run (the app and its options), without serving."""
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(app=app, **options))
    monkeypatch.setenv(ENVIRONMENT_KEY, "1")  # restored after the test
    return served


def test_serve_limits_decoded_images_and_answers_loopback_names_only(run_dir, shared_predictor, started):
    assert main(["-q", "serve", "--model-dir", str(run_dir), "--port", "8123"]) == 0
    assert max_decoded_mb() == SERVE_MAX_DECODED_MB
    assert started["host"] == "127.0.0.1" and started["port"] == 8123
    client = TestClient(started["app"], base_url="http://127.0.0.1:8123")
    assert client.get("/health").status_code == 200
    assert client.get("/health", headers={"Host": "localhost:8123"}).status_code == 200
    assert client.get("/health", headers={"Host": "rebound.attacker.example"}).status_code == 400

    assert main(["-q", "serve", "--model-dir", str(run_dir), "--max-decoded-mb", "64",
                 "--allowed-hosts", "mmdlr.lab.example"]) == 0
    assert max_decoded_mb() == 64
    client = TestClient(started["app"], base_url="http://mmdlr.lab.example")
    assert client.get("/health").status_code == 200
    assert client.get("/health", headers={"Host": "127.0.0.1"}).status_code == 400


@pytest.mark.parametrize("arguments, message", [
    (["--host", "0.0.0.0"], "--allowed-hosts is required with --host 0.0.0.0"),
    (["--max-upload-mb", "600"], "--max-spool-mb (512) must be at least --max-upload-mb (600)"),
    (["--max-queue", "-1"], "must be 0 or more"),
])
def test_settings_that_cannot_work_stop_the_command_with_one_line(run_dir, started, arguments, message, capsys):
    try:
        status = main(["-q", "serve", "--model-dir", str(run_dir), *arguments])
    except SystemExit as stop:  # argparse's own errors
        status = stop.code
    error = capsys.readouterr().err
    assert status == 2 and message in error and "Traceback" not in error and "app" not in started
