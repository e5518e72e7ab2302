"""A client that stalls its upload is answered 408 and leaves the inference queue (found by review: 70 idle
uploads held every slot)."""

from __future__ import annotations

import asyncio

from mmdlr.serve.limits import InferenceAdmission


async def _downstream(scope, receive, send):
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _call(admission: InferenceAdmission, messages: list[dict], stall: bool) -> list[dict]:
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        if stall:
            await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/infer/radiomics_us", "headers": []}
    asyncio.run(asyncio.wait_for(admission(scope, receive, send), 10))
    return sent


def test_a_stalled_body_gets_408_and_frees_its_place():
    admission = InferenceAdmission(_downstream, capacity=1, max_held_bytes=2**20, body_timeout=0.2)
    sent = _call(admission, [{"type": "http.request", "body": b"x", "more_body": True}], stall=True)
    assert sent[0]["status"] == 408 and b"--body-timeout" in sent[1]["body"]
    assert admission.admitted == 0 and admission.held_bytes == 0
    sent = _call(admission, [{"type": "http.request", "body": b"x", "more_body": True},
                             {"type": "http.request", "body": b"y", "more_body": False}], stall=False)
    assert sent[0]["status"] == 200  # a complete body within the deadline is served
