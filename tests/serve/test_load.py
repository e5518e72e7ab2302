"""The server under load: /health, /info/ and malformed requests answer while every compute slot is taken, a
full queue or spool limit answers 503 with Retry-After before reading the body, and a request whose client
left while queued is never computed. Predictions are held (the real predictor, released by the test) so
the slots stay busy for as long as each test needs; every wait is bounded."""

from __future__ import annotations

import collections
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from mmdlr.serve.app import ServeSettings, create_app

from .cases import AUTH, HOST, LOCAL_URL, TOKEN, free_port, upload_parts

WAIT_S = 60  # bound of every wait; the tests never depend on how long anything takes
STARLETTE_THREADS = 40  # anyio's default worker threads, which Starlette uses for sync routes and file writes


class HeldPredictions:
    """Replaces ``predictor.predict``: counts calls and waits for ``release`` before predicting. As a context
    manager it releases on exit, so a failing test never leaves requests waiting."""

    def __init__(self, predict):
        self.predict, self.calls = predict, 0
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, *args, **kwargs):
        self.calls += 1
        self.started.set()
        if not self.release.wait(2 * WAIT_S):  # longer than any wait of the test itself
            raise TimeoutError("the test never released the held prediction")
        return self.predict(*args, **kwargs)

    def __enter__(self) -> "HeldPredictions":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release.set()


@pytest.fixture
def held(predictor, monkeypatch) -> HeldPredictions:
    predictions = HeldPredictions(predictor.predict)
    monkeypatch.setattr(predictor, "predict", predictions)
    return predictions


@pytest.fixture(scope="module")
def files(cohort):
    return upload_parts(cohort[cohort["us_image"] != ""].iloc[0], ["us"])


def recording_body_reads(app):
    """``app`` wrapped to count the body bytes it reads, per ``X-Request`` header of the request."""
    reads = collections.Counter()

    async def recording(scope, receive, send):
        tag = dict(scope.get("headers", [])).get(b"x-request", b"").decode()

        async def counting_receive():
            message = await receive()
            reads[tag] += len(message.get("body", b""))
            return message

        await app(scope, counting_receive, send)

    return recording, reads


def bounded(call, *args):
    """``call(*args)`` in a thread of its own; a call stuck behind inference fails the test, never hangs it."""
    runner = ThreadPoolExecutor(1)
    try:
        return runner.submit(call, *args).result(WAIT_S)
    finally:
        runner.shutdown(wait=False)


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def inference_load(client) -> dict:
    return bounded(client.get, "/health").json()["inference"]


def test_health_info_and_malformed_requests_answer_while_every_slot_computes(predictor, files, held):
    """More requests wait for the one compute slot than Starlette has worker threads for its other work, and
    /health, /info/ and malformed requests are answered all the same; then the full queue refuses."""
    waiting = STARLETTE_THREADS + 1
    app, reads = recording_body_reads(create_app(predictor, ServeSettings(token=TOKEN, max_concurrent=1,
                                                                          max_queue=waiting + 1)))
    with TestClient(app, base_url=LOCAL_URL) as client, ThreadPoolExecutor(waiting + 3) as pool, held:
        def post(tag, parts=files):
            return client.post("/infer/deep_us", files=parts, headers=AUTH | {"X-Request": tag})

        queued = [pool.submit(post, "computing")]
        assert held.started.wait(WAIT_S)
        queued += [pool.submit(post, f"waiting {index}") for index in range(waiting)]
        wait_until(lambda: inference_load(client) == {"running": 1, "waiting": waiting}, "the requests to queue")
        assert bounded(client.get, "/health").status_code == 200
        assert bounded(lambda: client.get("/info/", headers=AUTH)).json()["name"] == "mmdlr"
        unknown = bounded(post, "unknown field", files + [("dbt_image", files[0][1])])
        assert unknown.status_code == 400 and "unknown file field 'dbt_image'" in unknown.json()["detail"]
        empty = bounded(post, "empty file", files[:1] + [("us_mask", ("mask.png", b""))])
        assert empty.status_code == 400 and "us_mask (mask.png) is an empty file" in empty.json()["detail"]

        queued.append(pool.submit(post, "last place"))
        wait_until(lambda: inference_load(client)["waiting"] == waiting + 1, "the queue to fill")
        refused = bounded(post, "refused")
        assert refused.status_code == 503 and "--max-queue" in refused.json()["detail"]
        assert int(refused.headers["Retry-After"]) >= 1
        assert reads["refused"] == 0 < reads["last place"]  # refused before a byte of its body was read
        held.release.set()
        assert [future.result(WAIT_S).status_code for future in queued] == [200] * len(queued)
    assert held.calls == len(queued)


def test_uploads_over_the_spool_limit_are_503_before_reading_them(predictor, files, held):
    body = len(httpx.Request("POST", LOCAL_URL, files=files).read())
    limit_mb = 1.5 * body / 2**20  # room for one request's body, not two
    app, reads = recording_body_reads(create_app(predictor, ServeSettings(max_concurrent=1, max_queue=8,
                                                                          max_upload_mb=limit_mb,
                                                                          max_spool_mb=limit_mb)))
    with TestClient(app, base_url=LOCAL_URL) as client, ThreadPoolExecutor(1) as pool, held:
        computing = pool.submit(client.post, "/infer/deep_us", files=files)
        assert held.started.wait(WAIT_S)
        declared = client.post("/infer/deep_us", files=files, headers={"X-Request": "declared"})
        assert declared.status_code == 503 and "--max-spool-mb" in declared.json()["detail"]
        assert "Retry-After" in declared.headers and reads["declared"] == 0

        streamed_body = httpx.Request("POST", LOCAL_URL, files=files)
        streamed = client.post("/infer/deep_us", content=iter([streamed_body.read()]),
                               headers={"Content-Type": streamed_body.headers["Content-Type"]})
        assert streamed.status_code == 503 and "--max-spool-mb" in streamed.json()["detail"]
        held.release.set()
        assert computing.result(WAIT_S).status_code == 200
        assert client.post("/infer/deep_us", files=files).status_code == 200  # the bytes were given back


@contextmanager
def serving(app):
    """``app`` on uvicorn on a free loopback port, in a thread; yields (host, port)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, "uvicorn to start")
        yield HOST, port
    finally:
        server.should_exit = True
        thread.join(WAIT_S)


def test_a_request_whose_client_left_while_queued_is_never_computed(predictor, files, held):
    with serving(create_app(predictor, ServeSettings(max_concurrent=1))) as (host, port), \
            httpx.Client(base_url=f"http://{host}:{port}", timeout=WAIT_S) as http, \
            httpx.Client(base_url=f"http://{host}:{port}", timeout=WAIT_S) as monitor, \
            ThreadPoolExecutor(1) as pool, held:
        computing = pool.submit(http.post, "/infer/deep_us", files=files)
        assert held.started.wait(WAIT_S)
        request = http.build_request("POST", "/infer/deep_us", files=files)
        body = request.read()
        head = (f"POST /infer/deep_us HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: "
                f"{request.headers['Content-Type']}\r\nContent-Length: {len(body)}\r\n\r\n")
        with socket.create_connection((host, port), timeout=WAIT_S) as leaving:
            leaving.sendall(head.encode() + body)
            wait_until(lambda: inference_load(monitor) == {"running": 1, "waiting": 1}, "the request to queue")
        wait_until(lambda: inference_load(monitor) == {"running": 1, "waiting": 0}, "the queued request to be dropped")
        held.release.set()
        assert computing.result(WAIT_S).status_code == 200
    assert held.calls == 1
