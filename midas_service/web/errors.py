"""Every error leaves as JSON: ``{"error": {"code", "message"}, "request_id"}``."""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, g, jsonify
from werkzeug.exceptions import HTTPException

from midas_service import imaging
from midas_service.runtime import ModelNotReady

log = logging.getLogger(__name__)


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadParameter(ApiError):
    code = "bad_parameter"


class MissingImage(ApiError):
    code = "missing_image"


class OutputTooLarge(ApiError):
    code = "output_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


# Domain errors from the imaging layer, mapped to HTTP here and nowhere else.
IMAGE_ERRORS: dict[type[imaging.ImageError], tuple[int, str]] = {
    imaging.EmptyImage: (400, "empty_image"),
    imaging.UndecodableImage: (400, "undecodable_image"),
    imaging.UnsupportedImage: (415, "unsupported_media_type"),
    imaging.ImageTooLarge: (413, "too_large"),
}


def error_parts(exc: ApiError | imaging.ImageError) -> tuple[int, str, str]:
    """(status, code, message) of a refusal, for the JSON handlers and the upload page alike."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code, exc.message
    status, code = IMAGE_ERRORS.get(type(exc), (400, "bad_image"))
    return status, code, str(exc)


def error_response(status: int, code: str, message: str) -> Response:
    response = jsonify(
        error={"code": code, "message": message}, request_id=g.get("request_id", None)
    )
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    @app.errorhandler(imaging.ImageError)
    def refused(exc: ApiError | imaging.ImageError) -> Response:
        return error_response(*error_parts(exc))

    @app.errorhandler(ModelNotReady)
    def not_ready(exc: ModelNotReady) -> Response:
        response = error_response(503, "not_ready", str(exc))
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        message = exc.description or exc.name
        if exc.code == 413:
            code = "too_large"
            limit = current_app.config["MIDAS_SETTINGS"].max_upload_mb
            message = f"the upload is larger than the {limit:g} MB limit"
        response = error_response(exc.code or 500, code, message)
        if exc.code == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error in request %s", g.get("request_id"))
        return error_response(500, "internal_error", "internal error; see the server log")
