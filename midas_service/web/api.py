"""The JSON/HTTP API: /predict, probes, metrics and the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify, request

from midas_service.serving import lifecycle
from midas_service.web import metrics
from midas_service.web.openapi import openapi_document
from midas_service.web.prediction import run_prediction, runtime
from midas_service.web.security import is_public
from midas_service.web.upload import read_image_bytes, read_options

api = Blueprint("api", __name__)


@api.post("/predict")
def predict() -> Response:
    settings = current_app.config["MIDAS_SETTINGS"]
    options = read_options(request, settings.colormap)
    g.output = options.output
    answer = run_prediction(options, read_image_bytes(request))
    response = Response(answer.body, mimetype=answer.media_type)
    if answer.download:
        response.headers["Content-Disposition"] = f'attachment; filename="depth{answer.suffix}"'
    return response


@api.get("/healthz")
def healthz() -> Response:
    """Alive unless the model failed for good (then a restart is the fix)."""
    error = runtime().error
    # The load error names local paths: for operators on Gunicorn's own port only.
    response = jsonify(status="failed" if error else "alive", error=None if is_public() else error)
    response.status_code = 500 if error else 200
    return response


@api.get("/readyz")
def readyz() -> Response:
    """Ready or not. Operators (Gunicorn's own port) also get pid, versions, model metadata,
    threads and any load error; the public (through nginx or the Ingress) gets none of it."""
    draining = lifecycle.draining()  # stopping: send no new traffic, though it would be served
    if is_public():
        info: dict[str, object] = {"ready": runtime().ready and not draining}
    else:
        info = runtime().describe()
        info["settings"] = current_app.config["MIDAS_PUBLIC_SETTINGS"]
        if draining:
            info["ready"] = False
    if draining:
        info["draining"] = True
    response = jsonify(info)
    response.status_code = 200 if info["ready"] else 503
    return response


@api.get("/metrics")
def prometheus_metrics() -> Response:
    body, content_type = metrics.render(
        current_app.config["MIDAS_SETTINGS"].metrics_dir,
        current_app.extensions.get("midas_collectors", ()),
    )
    return Response(body, content_type=content_type)


@api.get("/openapi.json")
def openapi() -> Response:
    jobs = current_app.extensions.get("midas_jobs")
    return jsonify(
        openapi_document(current_app.config["MIDAS_SETTINGS"], jobs.settings if jobs else None)
    )
