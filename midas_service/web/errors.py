"""Every error leaves as JSON: ``{"error": {"code", "message"}, "request_id"}``.

``ERROR_CODES`` is the one list of codes the service sends; the handlers, the OpenAPI document
and the README's table all follow it (``tests/test_web.py`` checks that they agree).
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
        413, "over `MIDAS_MAX_UPLOAD_MB` bytes, `MIDAS_MAX_PIXELS` pixels or 1,000,000 px a side"
    ),
    "unsupported_media_type": ErrorCode(
        415, "not JPEG, PNG, WebP, BMP or TIFF (judged by the bytes), or a wrong `Content-Type`"
    ),
    "internal_error": ErrorCode(
        500, "a fault in the service, e.g. a model that produced NaN or infinite depth; see the log"
    ),
    "not_ready": ErrorCode(503, "the model is still loading (`Retry-After: 1`) or failed to"),
    "overloaded": ErrorCode(
        503,
        "the worker cannot start the request within `MIDAS_QUEUE_TIMEOUT_S`, or "
        "`MIDAS_MAX_WAITING` requests already wait (`Retry-After: 1`)",
    ),
    "client_closed_request": ErrorCode(
        499, "the client hung up before its turn: not computed, and nobody reads this answer"
    ),
    "unavailable": ErrorCode(503, "sent by nginx: no Gunicorn worker answered (`Retry-After: 1`)"),
    "missing_file": ErrorCode(
        400, "`POST /jobs` without a multipart field `file`, or with an empty one"
    ),
    "bad_archive": ErrorCode(
        400,
        "a zip sent to `/jobs` that cannot be read, or holds more than `MIDAS_JOBS_MAX_ENTRIES` "
        "files or `MIDAS_JOBS_MAX_UNZIPPED_MB` uncompressed",
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
    ),
}


class ApiError(Exception):
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def status(self) -> int:
        return ERROR_CODES[self.code].status


class BadParameter(ApiError):
    code = "bad_parameter"


class MissingImage(ApiError):
    code = "missing_image"


class UnsupportedMediaType(ApiError):
    code = "unsupported_media_type"


# Domain errors from the request-independent layers, mapped to HTTP here and nowhere else.
DomainError = decode.ImageError | OutputTooLarge
DOMAIN_ERRORS: dict[type[Exception], str] = {
    decode.EmptyImage: "empty_image",
    decode.UndecodableImage: "undecodable_image",
    decode.UnsupportedImage: "unsupported_media_type",
    decode.ImageTooLarge: "too_large",
    OutputTooLarge: "output_too_large",
}
# Werkzeug's own HTTP errors; any other 4xx it raises is a malformed request.
HTTP_ERRORS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}
INTERNAL_MESSAGE = "internal error; see the server log"


def error_parts(exc: ApiError | DomainError) -> tuple[int, str, str]:
    """(status, code, message) of a refusal, for the JSON handlers and the upload page alike."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code, exc.message
    code = DOMAIN_ERRORS.get(type(exc))
    if code is None:  # a new ImageError subclass nobody mapped: a bug, not the user's fault
        log.error("error %s has no error code; add it to DOMAIN_ERRORS", type(exc).__name__)
        return 500, "internal_error", INTERNAL_MESSAGE
    return ERROR_CODES[code].status, code, str(exc)


def error_response(code: str, message: str, status: int | None = None) -> Response:
    """The JSON error body; ``status`` defaults to the code's status in ``ERROR_CODES``."""
    response = jsonify(
        error={"code": code, "message": message}, request_id=g.get("request_id", None)
    )
    response.status_code = status or ERROR_CODES[code].status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    @app.errorhandler(decode.ImageError)
    @app.errorhandler(OutputTooLarge)
    def refused(exc: ApiError | DomainError) -> Response:
        status, code, message = error_parts(exc)
        return error_response(code, message, status)

    @app.errorhandler(ModelNotReady)
    @app.errorhandler(Overloaded)
    def busy(exc: ModelNotReady | Overloaded) -> Response:
        """503 worth retrying in a second: the model is loading, or this worker is full."""
        code = "not_ready" if isinstance(exc, ModelNotReady) else "overloaded"
        response = error_response(code, str(exc))
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(NonFiniteDepth)
    def broken_model(exc: NonFiniteDepth) -> Response:
        log.error("request %s: %s", g.get("request_id"), exc)
        return error_response("internal_error", INTERNAL_MESSAGE)

    @app.errorhandler(ClientGone)
    def client_gone(exc: ClientGone) -> Response:
        return error_response("client_closed_request", str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = HTTP_ERRORS.get(status, "bad_request" if status < 500 else "internal_error")
        message = exc.description or exc.name
        if code == "too_large":
            limit = current_app.config["MIDAS_SETTINGS"].max_upload_mb
            message = f"the upload is larger than the {limit:g} MB limit"
        response = error_response(code, message, status)
        if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error in request %s", g.get("request_id"))
        return error_response("internal_error", INTERNAL_MESSAGE)
