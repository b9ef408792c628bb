"""Every refusal the service can answer, each a class carrying its code and HTTP status.

As in Werkzeug, the code and status live on the class: the web layer renders any
:class:`ServiceError` without a table (``midas_service.web.errors``), the job worker reports a
photo's refusal by the same code, and the table of ``docs/api.md`` and the OpenAPI
document list :data:`ERROR_CODES`, which is collected from the classes. A subclass that sets no
``code`` of its own answers with its parent's. Plain Python: the job worker and the commands
import this without Flask.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every refusal: ``code`` (stable, for programs), ``status`` and a message."""

    code = "internal_error"
    status = 500
    meaning = (
        "a fault in the service, e.g. a model that produced NaN or infinite depth; see the log"
    )
    retry_after: int | None = None  # seconds, sent as Retry-After: worth retrying soon

    def __init__(self, message: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra_headers = headers or {}

    def headers(self) -> dict[str, str]:
        retry = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        return retry | self.extra_headers


# --- 400: the request ----------------------------------------------------------------------


class BadParameter(ServiceError, ValueError):
    code, status = "bad_parameter", 400
    meaning = (
        "unknown, repeated or invalid parameter (`output`, `format`, `colormap`, the 3D and "
        "video ones), or a second file"
    )


class MissingImage(ServiceError):
    code, status = "missing_image", 400
    meaning = "no multipart field `image`, or no body at all"


class ImageError(ServiceError):
    """Base of every reason an uploaded photo is refused (each subclass has its code)."""


class EmptyImage(ImageError):
    code, status = "empty_image", 400
    meaning = "the uploaded file is empty"


class UndecodableImage(ImageError):
    """Looks like a supported format but cannot be decoded (truncated, corrupt)."""

    code, status = "undecodable_image", 400
    meaning = "a supported format that cannot be decoded (truncated)"


class OutputTooLarge(ServiceError):
    """The requested output cannot hold an image of this size (the message says what fits)."""

    code, status = "output_too_large", 400
    meaning = (
        "the answer would not fit its format (see [Size limits](#size-limits)), e.g. jpeg over "
        "65,500 px a side, json over 2 MP"
    )


class BadRequest(ServiceError):
    code, status = "bad_request", 400
    meaning = "a malformed HTTP request, e.g. a broken multipart body"


class MissingFile(ServiceError):
    code, status = "missing_file", 400
    meaning = "`POST /jobs` without a multipart field `file`, or with an empty one"


class BadArchive(ServiceError):
    code, status = "bad_archive", 400
    meaning = (
        "a zip sent to `/jobs` that cannot be read, holds no file, or holds more than "
        "`MIDAS_JOBS_MAX_ENTRIES` entries or `MIDAS_JOBS_MAX_UNZIPPED_MB` uncompressed"
    )


# --- 401 to 415: access, paths, size and type ----------------------------------------------


class Unauthorized(ServiceError):
    code, status = "unauthorized", 401
    meaning = (
        "`MIDAS_API_KEYS` is set and the request has no valid key (`WWW-Authenticate: Bearer`)"
    )


class NotFound(ServiceError):
    code, status = "not_found", 404
    meaning = "no such path"


class JobNotFound(ServiceError):
    code, status = "job_not_found", 404
    meaning = "no such job for this API key: never made, expired (`MIDAS_JOBS_TTL_S`) or deleted"


class MethodNotAllowed(ServiceError):
    code, status = "method_not_allowed", 405
    meaning = "wrong method (`Allow` lists the right ones)"


class JobNotFinished(ServiceError):
    code, status = "job_not_finished", 409
    meaning = "the result of a job that has not finished (yet)"


class TooLarge(ServiceError):
    code, status = "too_large", 413
    meaning = (
        "over `MIDAS_MAX_UPLOAD_MB` bytes, `MIDAS_MAX_PIXELS` pixels or 1,000,000 px a side; for "
        "`/jobs`, over `MIDAS_JOBS_MAX_UPLOAD_MB` bytes or `MIDAS_JOBS_MAX_ENTRIES` file parts"
    )


class ImageTooLarge(TooLarge, ImageError):
    """The photo's file or its header's width x height is over the limits."""


class UnsupportedMediaType(ServiceError):
    code, status = "unsupported_media_type", 415
    meaning = "not JPEG, PNG, WebP, BMP or TIFF (judged by the bytes), or a wrong `Content-Type`"


class UnsupportedImage(UnsupportedMediaType, ImageError):
    """Not one of the supported formats (by content, whatever the name or media type says)."""


class ClientGone(ServiceError):
    """The client closed its connection while waiting: its answer would go nowhere."""

    code, status = "client_closed_request", 499
    meaning = "the client hung up before its turn: not computed, and nobody reads this answer"


# --- 5xx: the service ----------------------------------------------------------------------


class NonFiniteDepth(ServiceError, RuntimeError):
    """The model produced NaN or infinite depth: the model file is broken, not the photo."""


class ModelNotReady(ServiceError):
    """The model is still loading, or failed to load."""

    code, status, retry_after = "not_ready", 503, 1
    meaning = "the model is still loading (`Retry-After: 1`) or failed to"


class Overloaded(ServiceError):
    """No compute turn for this request within the bounds: answer 503 with Retry-After."""

    code, status, retry_after = "overloaded", 503, 1
    meaning = (
        "the worker cannot start the request within `MIDAS_QUEUE_TIMEOUT_S`, or "
        "`MIDAS_MAX_WAITING` requests already wait (`Retry-After: 1`)"
    )


class Unavailable(ServiceError):
    """Sent by nginx only (its JSON error page); listed here so the table is complete."""

    code, status, retry_after = "unavailable", 503, 1
    meaning = "sent by nginx: no Gunicorn worker answered (`Retry-After: 1`)"


class JobsUnavailable(ServiceError):
    """Redis cannot be reached (or is not configured): jobs cannot be made or read now."""

    code, status, retry_after = "jobs_unavailable", 503, 5
    meaning = (
        "the job queue's Redis is unreachable or `REDIS_URL` is unset (`Retry-After: 5`); "
        "`/predict` still works"
    )


class QuotaExceeded(ServiceError):
    """The store holds too much already to accept this job."""

    code, status = "quota_exceeded", 507
    meaning = "the job store holds `MIDAS_JOBS_MAX_MB` already; retry when older jobs expire"


def _defining(cls: type[ServiceError]) -> list[type[ServiceError]]:
    """``cls`` and its subclasses, in definition order, each that sets its own ``code``."""
    found = [cls] if "code" in vars(cls) else []
    for sub in cls.__subclasses__():
        found += [c for c in _defining(sub) if c not in found]
    return found


def _by_status() -> dict[str, type[ServiceError]]:
    ordered = sorted(_defining(ServiceError), key=lambda c: c.status)
    return {c.code: c for c in ordered}


# code -> the class that defines it, by status: the one list of codes the service sends.
ERROR_CODES: dict[str, type[ServiceError]] = _by_status()
# Werkzeug's own HTTP errors (routing, malformed requests, the body limit) by status.
HTTP_ERRORS: dict[int, type[ServiceError]] = {
    400: BadRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: TooLarge,
}
INTERNAL_MESSAGE = "internal error; see the server log"
