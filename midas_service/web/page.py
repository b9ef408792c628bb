"""The plain upload page: an HTML form that posts back to itself, no JavaScript needed."""

from __future__ import annotations

import base64

from flask import Blueprint, current_app, render_template, request

from midas_service.imaging import ImageError
from midas_service.visualize import COLORMAPS
from midas_service.web.api import run_prediction
from midas_service.web.errors import ApiError, error_parts
from midas_service.web.upload import Options, read_colormap, read_image_bytes

page = Blueprint("page", __name__)


def _context(**extra: object) -> dict[str, object]:
    runtime = current_app.extensions["midas_runtime"]
    info = runtime.describe()
    return {
        "ready": info["ready"],
        "untrained": info.get("untrained", False),
        "colormaps": list(COLORMAPS),
        "colormap": current_app.config["MIDAS_SETTINGS"].colormap,
        "max_upload_mb": current_app.config["MIDAS_SETTINGS"].max_upload_mb,
        **extra,
    }


@page.get("/")
def index() -> str:
    return render_template("index.html", **_context())


@page.post("/")
def index_result() -> tuple[str, int]:
    try:
        colormap = read_colormap(request, current_app.config["MIDAS_SETTINGS"].colormap)
        body, media_type = run_prediction(
            Options("side", "jpeg", colormap), read_image_bytes(request)
        )
    except (ApiError, ImageError) as exc:
        status, _, message = error_parts(exc)
        return render_template("index.html", **_context(error=message)), status
    result = f"data:{media_type};base64,{base64.b64encode(body).decode('ascii')}"
    return render_template("index.html", **_context(result=result, colormap=colormap)), 200
