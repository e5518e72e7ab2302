"""Request limits (ASGI middleware), all answered before the body is read when the headers allow it.

:class:`BodySizeLimit`: 413 for a body declared larger than the upload limit, or as soon as a body without
(or with a false) Content-Length passes it. :class:`InferenceAdmission`: at most ``capacity`` inference
requests admitted at once (waiting for a compute slot or computing) and at most ``max_held_bytes`` of their
bodies held (in memory or spooled to temporary files); a request over either bound gets 503 with
``Retry-After``, and one whose body has not fully arrived ``body_timeout`` seconds after admission gets 408,
so clients that stall their uploads cannot hold the queue.
"""

from __future__ import annotations

import asyncio
import math
import time

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

RETRY_AFTER_SMOOTHING = 0.2  # weight of the newest request in the running mean of request durations


class Refused(Exception):
    """Raised from ``receive`` once a streamed body passes a limit; carries the response to send."""

    def __init__(self, response: JSONResponse):
        self.response = response


def declared_length(scope: Scope) -> int | None:
    value = dict(scope["headers"]).get(b"content-length", b"")
    return int(value) if value.isdigit() else None


async def guarded(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run ``app``; a :class:`Refused` raised before the response started is sent as its response."""
    started = False

    async def watching_send(message: Message) -> None:
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    try:
        await app(scope, receive, watching_send)
    except Refused as refusal:
        if started:
            raise
        await refusal.response(scope, receive, send)


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _too_large(self) -> JSONResponse:
        return JSONResponse({"detail": f"request body larger than the upload limit of "
                                       f"{self.max_bytes / 2**20:g} MB (--max-upload-mb)"}, status_code=413)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._too_large()(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise Refused(self._too_large())
            return message

        await guarded(self.app, scope, counting_receive, send)


class InferenceAdmission:
    """Admission of ``POST <prefix>...`` requests: a bounded queue and a bound on the body bytes held.

    A request is admitted from its headers until its response is sent. ``Retry-After`` is the running mean
    duration of admitted requests divided by ``capacity`` (the typical time until one leaves), at least 1 s.
    """

    def __init__(self, app: ASGIApp, capacity: int, max_held_bytes: int, body_timeout: float = 60.0,
                 prefix: str = "/infer/"):
        self.app, self.capacity, self.max_held_bytes, self.prefix = app, capacity, max_held_bytes, prefix
        self.body_timeout = body_timeout
        self.admitted = 0
        self.held_bytes = 0
        self.mean_seconds = 1.0

    def _busy(self, reason: str) -> JSONResponse:
        retry_after = max(1, math.ceil(self.mean_seconds / self.capacity))
        return JSONResponse({"detail": f"server busy: {reason}; retry in {retry_after} s"}, status_code=503,
                            headers={"Retry-After": str(retry_after)})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        if self.admitted >= self.capacity:
            await self._busy(f"{self.admitted} inference requests are already queued or running "
                             f"(--max-concurrent + --max-queue)")(scope, receive, send)
            return
        reserved = declared_length(scope) or 0
        if self.held_bytes + reserved > self.max_held_bytes:
            await self._busy("the uploads of queued requests fill the spool limit (--max-spool-mb)")(
                scope, receive, send)
            return
        self.admitted += 1
        self.held_bytes += reserved
        received, body_done = 0, False
        deadline = time.monotonic() + self.body_timeout

        async def reserving_receive() -> Message:
            nonlocal received, reserved, body_done
            if body_done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
            except TimeoutError:
                raise Refused(JSONResponse({"detail": f"request body not received within {self.body_timeout:g} s "
                                                      "(--body-timeout)"}, status_code=408)) from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            received += len(message.get("body", b""))
            if received > reserved:  # no or a false Content-Length: reserve as the body streams in
                if self.held_bytes + received - reserved > self.max_held_bytes:
                    raise Refused(self._busy("the uploads of queued requests fill the spool limit "
                                             "(--max-spool-mb)"))
                self.held_bytes += received - reserved
                reserved = received
            return message

        started = time.monotonic()
        try:
            await guarded(self.app, scope, reserving_receive, send)
        finally:
            self.admitted -= 1
            self.held_bytes -= reserved
            self.mean_seconds += RETRY_AFTER_SMOOTHING * (time.monotonic() - started - self.mean_seconds)
