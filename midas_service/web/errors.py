"""Every refusal as an HTTP answer: JSON for the API, the same lookup for the upload page.

The codes, statuses and Retry-After live on the error classes (``midas_service.errors``);
this module only renders them, and maps Werkzeug's own HTTP errors onto those classes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, Response, current_app, g, jsonify
from werkzeug.exceptions import HTTPException

from midas_service.errors import HTTP_ERRORS, INTERNAL_MESSAGE, ServiceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    """What to answer for an exception: the code, its status and headers, and the message."""

    code: str
    message: str
    status: int
    headers: dict[str, str]


def refusal_for(exc: Exception) -> Refusal:
    """The one lookup from exception to answer, for the JSON handler and the page alike."""
    if isinstance(exc, HTTPException):
        return http_refusal(exc)
    if not isinstance(exc, ServiceError):
        log.exception("unhandled error in request %s", g.get("request_id"))
        return Refusal("internal_error", INTERNAL_MESSAGE, 500, {})
    if exc.code == "internal_error":  # a fault in the service: the log has it, not the client
        log.error("request %s: %s", g.get("request_id"), exc)
        return Refusal(exc.code, INTERNAL_MESSAGE, exc.status, exc.headers())
    return Refusal(exc.code, exc.message or str(exc), exc.status, exc.headers())


def http_refusal(exc: HTTPException) -> Refusal:
    """Werkzeug's own errors (routing, malformed requests, the body limit)."""
    status = exc.code or 500
    error = HTTP_ERRORS.get(status)
    code = error.code if error else ("bad_request" if status < 500 else "internal_error")
    message = exc.description or exc.name
    if status == 413:
        limit = current_app.config["MIDAS_SETTINGS"].max_upload_mb
        message = f"the upload is larger than the {limit:g} MB limit"
    headers = {}
    if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
        headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
    return Refusal(code, message, status, headers)


def json_response(refusal: Refusal) -> Response:
    """The JSON rendering of a refusal: ``{"error": {"code", "message"}, "request_id"}``."""
    response = jsonify(
        error={"code": refusal.code, "message": refusal.message},
        request_id=g.get("request_id", None),
    )
    response.status_code = refusal.status
    response.headers.update(refusal.headers)
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(Exception)  # Werkzeug's HTTP errors too (routing redirects excepted)
    def refused(exc: Exception) -> Response:
        return json_response(refusal_for(exc))
