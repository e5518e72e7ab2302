"""The HTTP server (FastAPI), shaped like MONAI Label: ``GET /info/``, ``POST /infer/{model}``, ``GET /health``.

Every route but ``/health`` (the API docs included) needs the bearer token when one is set, and every
request needs a ``Host`` among the allowed names. An inference request is admitted only while the queue and
the spool limit have room (503 with ``Retry-After`` otherwise, before its body is read); its fields are
checked as soon as its form is parsed; then it waits for one of ``max_concurrent`` compute slots (dropped if
its client leaves) and runs in a worker thread of its own pool, so ``/health`` and ``/info/`` never wait on
inference. Uploads are copied into a private temporary folder deleted after the request. Errors are JSON
``{"detail": ...}``: 400 bad files or fields, 401 token, 404 unknown model, 413 too large, 422 missing
modality, 503 busy, and 500 with an ``error_id`` for anything else (its traceback only in the server log).
"""

from __future__ import annotations

import hmac
import io
import json
import logging
import tempfile
import time
import uuid
from pathlib import Path
from typing import Literal

import anyio
import anyio.to_thread
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import JSONResponse, Response
from PIL import Image
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect

from mmdlr import __version__
from mmdlr.errors import CaseError
from mmdlr.io.manifest import LABEL_NAMES
from mmdlr.serve.limits import BodySizeLimit, InferenceAdmission
from mmdlr.serve.predictor import MissingModalityError, Prediction, Predictor
from mmdlr.serve.run_folder import ServedModel, UnknownModelError
from mmdlr.serve.settings import ServeSettings
from mmdlr.serve.uploads import (MAX_FILES, MAX_TEXT_FIELDS, PARAMS, CaseForm, UploadError, read_case_form,
                                 save_uploads, upload_fields)

log = logging.getLogger(__name__)
LABELS = {name: index for index, name in enumerate(LABEL_NAMES)}
DISCONNECT_POLL_S = 0.5  # how often a request waiting for a compute slot checks that its client is still there
CLIENT_CLOSED = 499  # the status logged for a request dropped because its client left (nginx's convention)



class ComputeSlots:
    """At most ``size`` inference computations at once, in worker threads of their own pool."""

    def __init__(self, size: int):
        self.free = anyio.Semaphore(size)
        self.threads = anyio.CapacityLimiter(size)
        self.waiting = self.running = 0

    async def run(self, request: Request, function, *args):
        """``function(*args)`` in a worker thread once a slot is free (first come, first served);
        ClientDisconnect if the client left while waiting."""
        self.waiting += 1
        try:
            await self._acquire_while_connected(request)
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            return await anyio.to_thread.run_sync(function, *args, limiter=self.threads)
        finally:
            self.running -= 1
            self.free.release()

    async def _acquire_while_connected(self, request: Request) -> None:
        """Wait in line for a slot while a watcher checks the client every DISCONNECT_POLL_S; the wait is never
        interrupted otherwise, so requests keep their place in the line."""
        acquired = left = False
        async with anyio.create_task_group() as waiting:
            async def watch_client() -> None:
                nonlocal left
                while not await request.is_disconnected():
                    await anyio.sleep(DISCONNECT_POLL_S)
                left = True
                waiting.cancel_scope.cancel()

            waiting.start_soon(watch_client)
            await self.free.acquire()
            acquired = True
            waiting.cancel_scope.cancel()
        if left:
            if acquired:
                self.free.release()
            raise ClientDisconnect


def bearer_token(token: str | None):
    """A dependency that requires ``Authorization: Bearer <token>`` (nothing when ``token`` is empty)."""
    expected = f"Bearer {token}".encode() if token else None

    async def check(authorization: str | None = Header(default=None)) -> None:
        if expected and not (authorization and hmac.compare_digest(authorization.encode(), expected)):
            raise HTTPException(401, "missing or wrong bearer token (header Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})

    return check


async def internal_error(request: Request, error: Exception) -> JSONResponse:
    """500 for anything that is not the input's fault: an error id for the client, the traceback in the log."""
    error_id = uuid.uuid4().hex
    log.error("error %s on %s %s", error_id, request.method, request.url.path, exc_info=error)
    return JSONResponse({"detail": f"internal server error {error_id}: the server log has its details",
                         "error_id": error_id}, status_code=500)


def service_info(predictor: Predictor, max_upload_mb: float) -> dict:
    """``GET /info/``: labels, upload fields and every model with its protocol and test metrics."""
    folder, analysis = predictor.folder, predictor.folder.config.analysis
    if analysis.protocol == "holdout":
        protocol = {"name": "holdout", "test_size": analysis.holdout.test_size,
                    "metrics_on": "the run's hold-out test patients"}
    elif analysis.protocol == "leave_center_out":
        protocol = {"name": "leave_center_out", "metrics_on": "each center as the test set of a model trained on "
                    "the other centers"}
    else:
        protocol = {"name": "nested_cv", "outer_folds": analysis.nested_cv.outer_folds,
                    "repeats": analysis.nested_cv.repeats, "metrics_on": "the outer test folds of nested CV"}
    models = {name: {"type": "classification", "labels": LABELS, "modalities": model.modalities,
                     "needs_every_modality": model.needs_every_modality, "description": model.description,
                     "family": model.bundle.family, "method": model.bundle.method,
                     "classifier": model.bundle.classifier, "threshold": model.bundle.threshold,
                     "trained_on": model.bundle.trained_on, "gradcam_modalities": model.cnn_modalities,
                     "protocol": protocol, "test_metrics": model.metrics}
              for name, model in folder.models.items()}
    return {"name": "mmdlr", "version": __version__,
            "description": "benign vs malignant breast tumour from lesion ROIs (Lu et al. 2024)",
            "labels": LABELS, "modalities": folder.modalities, "upload_fields": upload_fields(folder.modalities),
            "params": list(PARAMS), "max_upload_mb": max_upload_mb, "models": models}


MAX_CENTER_CHARS = 100  # a site or scanner name; it is echoed in errors


def check_center_param(params: dict) -> None:
    """``params.center``, when given, names the case's centre (ComBat-harmonised runs need it) as a string."""
    center = params.get("center")
    if center is not None and not (isinstance(center, str) and 0 < len(center) <= MAX_CENTER_CHARS
                                   and center.isprintable()):
        raise UploadError(f"params center must name the case's centre (site or scanner) as a non-empty printable "
                          f"string of at most {MAX_CENTER_CHARS} characters, e.g. {{\"center\": \"A\"}}, not "
                          f"{json.dumps(center)[:40]}")


def gradcam_modality(model: ServedModel, form: CaseForm) -> str:
    """The modality whose CNN ``output=image`` explains: ``params.modality``, or the model's only CNN."""
    choices = model.cnn_modalities
    if not choices:
        raise UploadError(f"model {model.name} reads no CNN features, so it has no Grad-CAM")
    modality = form.params.get("modality") or (choices[0] if len(choices) == 1 else None)
    if modality not in choices:
        raise UploadError(f"params must name a Grad-CAM modality of model {model.name}: "
                          f"{' or '.join(json.dumps({'modality': m}) for m in choices)}")
    if modality not in form.files:
        raise MissingModalityError(f"Grad-CAM of modality {modality} needs files {modality}_image and "
                                   f"{modality}_mask", [modality])
    return modality


def prediction_json(prediction: Prediction, latencies: dict[str, float], form: CaseForm, image: str | None) -> dict:
    """MONAI Label's classification result (``prediction``, ``label_names``, ``latencies``) and mmdlr's details;
    ``image``: the client's image id (MONAI Label's ``?image=``), echoed."""
    scores = {1: prediction.probability, 0: 1 - prediction.probability}
    decided_first = sorted(scores, key=lambda idx: idx != prediction.label)
    return {"model": prediction.model, **({"image": image} if image is not None else {}),
            "prediction": [{"idx": idx, "label": LABEL_NAMES[idx], "score": scores[idx]} for idx in decided_first],
            "label_names": LABELS, "probability_malignant": prediction.probability, "threshold": prediction.threshold,
            "per_modality": prediction.per_modality, "modalities_used": prediction.modalities_used,
            "shift_warnings": prediction.shift_warnings,
            "ignored_params": form.ignored_params,
            "latencies": {name: round(seconds, 4) for name, seconds in latencies.items()}}


def png_bytes(rgb) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def create_app(predictor: Predictor, settings: ServeSettings = ServeSettings()) -> FastAPI:
    """The server of one run's models."""
    app = FastAPI(title="mmdlr", version=__version__, description=__doc__.split("\n")[0],
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(InferenceAdmission, capacity=settings.max_concurrent + settings.max_queue,
                       max_held_bytes=int(settings.max_spool_mb * 2**20), body_timeout=settings.body_timeout)
    app.add_middleware(BodySizeLimit, max_bytes=int(settings.max_upload_mb * 2**20))
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))
    app.add_exception_handler(Exception, internal_error)
    authorised = [Depends(bearer_token(settings.token))]
    info = service_info(predictor, settings.max_upload_mb)
    slots = ComputeSlots(settings.max_concurrent)

    def infer_files(model: ServedModel, form: CaseForm, gradcam: str | None, image: str | None, started: float):
        with tempfile.TemporaryDirectory(prefix="mmdlr-upload-") as folder:
            uploads = save_uploads(form, Path(folder))
            saved = time.perf_counter()
            try:
                if gradcam:
                    overlay = predictor.explain(model.name, gradcam, uploads.files)
                    return Response(png_bytes(overlay), media_type="image/png",
                                    headers={"X-MMDLR-Modality": gradcam})
                prediction = predictor.predict(uploads.files, [model.name], center=form.params.get("center"))[0]
            except CaseError as error:
                status = 422 if isinstance(error, MissingModalityError) else 400
                raise HTTPException(status, uploads.describe(str(error))) from error
        done = time.perf_counter()
        return prediction_json(prediction, {"upload": saved - started, "inference": done - saved,
                                            "total": done - started}, form, image)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "inference": {"running": slots.running, "waiting": slots.waiting}}

    @app.get("/info/", dependencies=authorised)
    async def get_info() -> dict:
        return info

    @app.post("/infer/{model}", dependencies=authorised)
    async def infer(model: str, request: Request, output: Literal["json", "image"] = "json",
                    image: str | None = None):
        started = time.perf_counter()
        try:
            served = predictor.folder.model(model)
        except UnknownModelError as error:
            raise HTTPException(404, str(error)) from error
        try:
            async with request.form(max_files=MAX_FILES, max_fields=MAX_TEXT_FIELDS) as form:
                case = read_case_form(form, predictor.folder.modalities, served.modalities)
                check_center_param(case.params)
                gradcam = gradcam_modality(served, case) if output == "image" else None
                if not gradcam:
                    predictor.usable_modalities(served, list(case.files))
                return await slots.run(request, infer_files, served, case, gradcam, image, started)
        except UploadError as error:
            raise HTTPException(400, str(error)) from error
        except MissingModalityError as error:
            raise HTTPException(422, str(error)) from error
        except ClientDisconnect:
            log.info("POST %s dropped: the client left before it was computed", request.url.path)
            return Response(status_code=CLIENT_CLOSED)

    @app.get("/openapi.json", dependencies=authorised, include_in_schema=False)
    async def openapi() -> dict:
        return app.openapi()

    @app.get("/docs", dependencies=authorised, include_in_schema=False)
    async def swagger_ui() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="mmdlr API")

    @app.get("/redoc", dependencies=authorised, include_in_schema=False)
    async def redoc() -> Response:
        return get_redoc_html(openapi_url="/openapi.json", title="mmdlr API")

    return app
