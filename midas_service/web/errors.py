"""Every refusal, as JSON for the API and as HTML for the upload page, from one lookup.

``ERROR_CODES`` is the one list of codes the service sends (status, meaning, Retry-After);
``ERRORS`` is the one map from exception type to code, and :func:`refusal_for` the one lookup
both renderers use. The OpenAPI document and the README's table follow ``ERROR_CODES``
(``tests/test_web.py`` checks that they agree).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, Response, current_app, g, jsonify
from werkzeug.exceptions import HTTPException

from midas_service.answer import OutputTooLarge
from midas_service.images import decode
from midas_service.inference.pipeline import NonFiniteDepth
from midas_service.inference.runtime import ModelNotReady
from midas_service.serving.admission import ClientGone, Overloaded

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorCode:
    status: int
    meaning: str
    retry_after: int | None = None  # seconds, sent as Retry-After: worth retrying soon


ERROR_CODES: dict[str, ErrorCode] = {
    "bad_parameter": ErrorCode(
        400, "unknown, repeated or invalid `output`, `format` or `colormap`, or a second file"
    ),
    "missing_image": ErrorCode(400, "no multipart field `image`, or no body at all"),
    "empty_image": ErrorCode(400, "the uploaded file is empty"),
    "undecodable_image": ErrorCode(400, "a supported format that cannot be decoded (truncated)"),
    "output_too_large": ErrorCode(
        400,
        "the answer would not fit its format (see [Size limits](#size-limits)), e.g. jpeg over "
        "65,500 px a side, json over 2 MP",
    ),
    "bad_request": ErrorCode(400, "a malformed HTTP request, e.g. a broken multipart body"),
    "unauthorized": ErrorCode(
        401,
        "`MIDAS_API_KEYS` is set and the request has no valid key (`WWW-Authenticate: Bearer`)",
    ),
    "not_found": ErrorCode(404, "no such path"),
    "method_not_allowed": ErrorCode(405, "wrong method (`Allow` lists the right ones)"),
    "too_large": ErrorCode(
        413,
        "over `MIDAS_MAX_UPLOAD_MB` bytes, `MIDAS_MAX_PIXELS` pixels or 1,000,000 px a side; for "
        "`/jobs`, over `MIDAS_JOBS_MAX_UPLOAD_MB` bytes or `MIDAS_JOBS_MAX_ENTRIES` file parts",
    ),
    "unsupported_media_type": ErrorCode(
        415, "not JPEG, PNG, WebP, BMP or TIFF (judged by the bytes), or a wrong `Content-Type`"
    ),
    "internal_error": ErrorCode(
        500, "a fault in the service, e.g. a model that produced NaN or infinite depth; see the log"
    ),
    "not_ready": ErrorCode(
        503, "the model is still loading (`Retry-After: 1`) or failed to", retry_after=1
    ),
    "overloaded": ErrorCode(
        503,
        "the worker cannot start the request within `MIDAS_QUEUE_TIMEOUT_S`, or "
        "`MIDAS_MAX_WAITING` requests already wait (`Retry-After: 1`)",
        retry_after=1,
    ),
    "client_closed_request": ErrorCode(
        499, "the client hung up before its turn: not computed, and nobody reads this answer"
    ),
    "unavailable": ErrorCode(
        503, "sent by nginx: no Gunicorn worker answered (`Retry-After: 1`)", retry_after=1
    ),
    "missing_file": ErrorCode(
        400, "`POST /jobs` without a multipart field `file`, or with an empty one"
    ),
    "bad_archive": ErrorCode(
        400,
        "a zip sent to `/jobs` that cannot be read, holds no file, or holds more than "
        "`MIDAS_JOBS_MAX_ENTRIES` entries or `MIDAS_JOBS_MAX_UNZIPPED_MB` uncompressed",
    ),
    "job_not_found": ErrorCode(
        404, "no such job for this API key: never made, expired (`MIDAS_JOBS_TTL_S`) or deleted"
    ),
    "job_not_finished": ErrorCode(409, "the result of a job that has not finished (yet)"),
    "quota_exceeded": ErrorCode(
        507, "the job store holds `MIDAS_JOBS_MAX_MB` already; retry when older jobs expire"
    ),
    "jobs_unavailable": ErrorCode(
        503,
        "the job queue's Redis is unreachable or `REDIS_URL` is unset (`Retry-After: 5`); "
        "`/predict` still works",
        retry_after=5,
    ),
}


class ApiError(Exception):
    """A request the HTTP layer refuses; its code is in ``ERRORS`` like every other error's,
    or, for a refusal defined beside its routes (web/jobs.py, web/security.py), ``code``."""

    code: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadParameter(ApiError):
    pass


class MissingImage(ApiError):
    pass


class UnsupportedMediaType(ApiError):
    pass


# Every exception type a request can end in, and its code: the only place exceptions meet HTTP.
# Looked up along the exception's class hierarchy, so a subclass inherits its parent's code.
ERRORS: dict[type[Exception], str] = {
    BadParameter: "bad_parameter",
    MissingImage: "missing_image",
    UnsupportedMediaType: "unsupported_media_type",
    ApiError: "bad_request",
    decode.EmptyImage: "empty_image",
    decode.UndecodableImage: "undecodable_image",
    decode.UnsupportedImage: "unsupported_media_type",
    decode.ImageTooLarge: "too_large",
    OutputTooLarge: "output_too_large",
    ModelNotReady: "not_ready",
    Overloaded: "overloaded",
    ClientGone: "client_closed_request",
    NonFiniteDepth: "internal_error",  # the model's fault, not the photo's
}
# Werkzeug's own HTTP errors; any other 4xx it raises is a malformed request.
HTTP_ERRORS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}
INTERNAL_MESSAGE = "internal error; see the server log"


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
    own = exc.code if isinstance(exc, ApiError) else None
    code = own or next((ERRORS[t] for t in type(exc).__mro__ if t in ERRORS), "internal_error")
    if code == "internal_error":  # a fault in the service: the log has it, the client does not
        if type(exc) in ERRORS:
            log.error("request %s: %s", g.get("request_id"), exc)
        else:
            log.exception("unhandled error in request %s", g.get("request_id"))
        message = INTERNAL_MESSAGE
    else:
        message = exc.message if isinstance(exc, ApiError) else str(exc)
    return _refusal(code, message)


def http_refusal(exc: HTTPException) -> Refusal:
    """Werkzeug's own errors (routing, malformed requests, the body limit)."""
    status = exc.code or 500
    code = HTTP_ERRORS.get(status, "bad_request" if status < 500 else "internal_error")
    message = exc.description or exc.name
    if code == "too_large":
        limit = current_app.config["MIDAS_SETTINGS"].max_upload_mb
        message = f"the upload is larger than the {limit:g} MB limit"
    refusal = _refusal(code, message, status)
    if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
        refusal.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
    return refusal


def _refusal(code: str, message: str, status: int | None = None) -> Refusal:
    error = ERROR_CODES[code]
    headers = {} if error.retry_after is None else {"Retry-After": str(error.retry_after)}
    return Refusal(code, message, status or error.status, headers)


def error_response(code: str, message: str, status: int | None = None) -> Response:
    """The JSON error body, with the code's status and Retry-After."""
    return json_response(_refusal(code, message, status))


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
