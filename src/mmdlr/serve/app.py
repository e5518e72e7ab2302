"""The HTTP server (FastAPI), shaped like MONAI Label: ``GET /info/``, ``POST /infer/{model}``, ``GET /health``.

Every route but ``/health`` needs the bearer token when one is set. Uploads are copied into a private
temporary folder that is deleted after the request; inference runs in worker threads, at most
``max_concurrent`` at a time, never on the event loop. Errors are JSON ``{"detail": ...}``: 400 bad
files or fields, 401 token, 404 unknown model, 413 too large, 422 missing modality.
"""

from __future__ import annotations

import hmac
import io
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from PIL import Image

from mmdlr import __version__
from mmdlr.errors import CaseError
from mmdlr.io.manifest import LABEL_NAMES
from mmdlr.serve.limits import BodySizeLimit
from mmdlr.serve.predictor import MissingModalityError, Prediction, Predictor
from mmdlr.serve.run_folder import ServedModel, UnknownModelError
from mmdlr.serve.uploads import SavedUploads, UploadError, save_uploads, upload_fields

LABELS = {name: index for index, name in enumerate(LABEL_NAMES)}
PARAMS_FIELD = "params"
PARAMS = ("modality",)


def bearer_token(token: str | None):
    """A dependency that requires ``Authorization: Bearer <token>`` (nothing when ``token`` is empty)."""
    expected = f"Bearer {token}".encode() if token else None

    def check(authorization: str | None = Header(default=None)) -> None:
        if expected and not (authorization and hmac.compare_digest(authorization.encode(), expected)):
            raise HTTPException(401, "missing or wrong bearer token (header Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})

    return check


def service_info(predictor: Predictor, max_upload_mb: float) -> dict:
    """``GET /info/``: labels, upload fields and every model with its protocol and test metrics."""
    folder, analysis = predictor.folder, predictor.folder.config.analysis
    if analysis.protocol == "holdout":
        protocol = {"name": "holdout", "test_size": analysis.holdout.test_size,
                    "metrics_on": "the run's hold-out test patients"}
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


def read_params(values: list) -> dict:
    """The optional ``params`` form field: one JSON object with known keys."""
    if not values:
        return {}
    if len(values) > 1 or not isinstance(values[0], str):
        raise UploadError("params must be one text field holding a JSON object")
    try:
        params = json.loads(values[0])
    except json.JSONDecodeError as error:
        raise UploadError(f"params is not valid JSON ({error})") from error
    if not isinstance(params, dict):
        raise UploadError("params must be a JSON object, e.g. {\"modality\": \"us\"}")
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise UploadError(f"unknown params {', '.join(unknown)}; known: {', '.join(PARAMS)}")
    return params


def prediction_json(prediction: Prediction, latencies: dict[str, float]) -> dict:
    score = prediction.probability if prediction.label else 1 - prediction.probability
    return {"model": prediction.model,
            "prediction": [{"idx": prediction.label, "label": prediction.label_name, "score": score}],
            "probability_malignant": prediction.probability, "threshold": prediction.threshold,
            "per_modality": prediction.per_modality, "modalities_used": prediction.modalities_used,
            "latencies": {name: round(seconds, 4) for name, seconds in latencies.items()}}


def png_bytes(rgb) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def create_app(predictor: Predictor, token: str | None = None, max_upload_mb: float = 100,
               max_concurrent: int = 4) -> FastAPI:
    """The server of one run's models (``token`` None: no authentication)."""
    app = FastAPI(title="mmdlr", version=__version__, description=__doc__.split("\n")[0])
    app.add_middleware(BodySizeLimit, max_bytes=int(max_upload_mb * 2**20))
    authorised = [Depends(bearer_token(token))]
    info = service_info(predictor, max_upload_mb)
    slots = threading.BoundedSemaphore(max_concurrent)

    def explain(model: ServedModel, uploads: SavedUploads, params: dict) -> Response:
        choices = model.cnn_modalities
        modality = params.get("modality") or (choices[0] if len(choices) == 1 else None)
        if not choices:
            raise UploadError(f"model {model.name} reads no CNN features, so it has no Grad-CAM")
        if modality not in choices:
            raise UploadError(f"params must name a Grad-CAM modality of model {model.name}: "
                              f"{' or '.join(json.dumps({'modality': m}) for m in choices)}")
        overlay = predictor.explain(model.name, modality, uploads.files)
        return Response(png_bytes(overlay), media_type="image/png", headers={"X-MMDLR-Modality": modality})

    def infer_files(model: ServedModel, items: list, params: dict, output: str, started: float):
        with slots, tempfile.TemporaryDirectory(prefix="mmdlr-upload-") as folder:
            uploads = save_uploads(items, predictor.folder.modalities, Path(folder))
            saved = time.perf_counter()
            try:
                if output == "image":
                    return explain(model, uploads, params)
                prediction = predictor.predict(uploads.files, [model.name])[0]
            except CaseError as error:
                status = 422 if isinstance(error, MissingModalityError) else 400
                raise HTTPException(status, uploads.describe(str(error))) from error
        done = time.perf_counter()
        return prediction_json(prediction, {"upload": saved - started, "inference": done - saved,
                                            "total": done - started})

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/info/", dependencies=authorised)
    def get_info() -> dict:
        return info

    @app.post("/infer/{model}", dependencies=authorised)
    async def infer(model: str, request: Request, output: Literal["json", "image"] = "json"):
        started = time.perf_counter()
        try:
            served = predictor.folder.model(model)
        except UnknownModelError as error:
            raise HTTPException(404, str(error)) from error
        form = await request.form()
        try:
            items = form.multi_items()
            params = read_params([value for field, value in items if field == PARAMS_FIELD])
            files = [(field, value) for field, value in items if field != PARAMS_FIELD]
            return await run_in_threadpool(infer_files, served, files, params, output, started)
        except UploadError as error:
            raise HTTPException(400, str(error)) from error
        finally:
            await form.close()

    return app
