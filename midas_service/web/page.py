"""The upload page: an HTML form that works without JavaScript, enhanced by static ES modules.

The page's script colours the depth map in the browser, so it fetches OpenCV's colour tables
from ``/colormaps.json`` (computed here from the same code as the server's heatmaps) and every
HTML answer carries a strict Content-Security-Policy: nothing inline, nothing from elsewhere.
"""

from __future__ import annotations

import base64
from functools import cache

import numpy as np
from flask import Blueprint, Response, current_app, jsonify, render_template, request

from midas_service.images.outputs import RenderOptions
from midas_service.images.visualize import COLORMAPS, heatmap
from midas_service.web.errors import refusal_for
from midas_service.web.prediction import run_prediction
from midas_service.web.upload import read_colormap, read_image_bytes

page = Blueprint("page", __name__)

# data: for the no-JavaScript result (an inline JPEG) and the tab icon; blob: for the pictures
# the script makes and a job's video. Everything else only from this origin, and no inline
# script or style.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",  # a finished job's video (static/jobs.js)
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
    )
)
COLORMAP_CACHE_SECONDS = 3600


@page.after_request
def add_content_security_policy(response: Response) -> Response:
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


def _context(**extra: object) -> dict[str, object]:
    runtime = current_app.extensions["midas_runtime"]
    info = runtime.describe()
    return {
        "ready": info["ready"],
        "untrained": info.get("untrained", False),
        "colormaps": list(COLORMAPS),
        "colormap": current_app.config["MIDAS_SETTINGS"].colormap,
        "max_upload_mb": current_app.config["MIDAS_SETTINGS"].max_upload_mb,
        "keys_required": bool(current_app.config["MIDAS_SETTINGS"].api_keys),
        **extra,
    }


@page.get("/")
def index() -> str:
    return render_template("index.html", **_context())


@cache
def colour_tables() -> dict[str, str]:
    """Each colormap's 256 RGB entries (768 bytes, base64), taken from the server's heatmap of
    the ramp 0..255, so the browser colours exactly as /predict does."""
    ramp = np.arange(256, dtype=np.float32).reshape(1, 256)
    tables = {}
    for name in COLORMAPS:
        rgb = heatmap(ramp, name)[0, :, ::-1]
        tables[name] = base64.b64encode(np.ascontiguousarray(rgb).tobytes()).decode("ascii")
    return tables


@page.get("/colormaps.json")
def colormaps() -> Response:
    response = jsonify(colour_tables())
    response.headers["Cache-Control"] = f"public, max-age={COLORMAP_CACHE_SECONDS}"
    return response


@page.post("/")
def index_result() -> tuple[str, int, dict[str, str]]:
    """The no-JavaScript form: the page again, with the result or the refusal as a sentence."""
    try:
        colormap = read_colormap(request, current_app.config["MIDAS_SETTINGS"].colormap)
        answer = run_prediction(RenderOptions("side", "jpeg", colormap), read_image_bytes(request))
    except Exception as exc:  # the same lookup as the JSON handler, rendered as HTML
        refusal = refusal_for(exc)
        message = refusal.message
        if refusal.headers.get("Retry-After"):
            message = f"The server is busy ({message}). Please try again in a moment."
        page_html = render_template("index.html", **_context(error=message))
        return page_html, refusal.status, refusal.headers
    result = f"data:{answer.media_type};base64,{base64.b64encode(answer.body).decode('ascii')}"
    return render_template("index.html", **_context(result=result, colormap=colormap)), 200, {}
