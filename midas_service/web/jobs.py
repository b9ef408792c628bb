"""The /jobs routes: submit a video or photos (a zip, or several files), poll, fetch, cancel.

The web side only stores the upload in a job folder and puts the job's id on the queue; a
worker process (``python -m midas_service worker``) does the work. Redis being down makes
/jobs answer 503 ``jobs_unavailable`` and leaves /predict alone.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from functools import cached_property
from typing import IO, Any

from flask import (
    Blueprint,
    Flask,
    Request,
    Response,
    current_app,
    jsonify,
    request,
    send_file,
    url_for,
)
from werkzeug.exceptions import RequestEntityTooLarge

from midas_service.config import Settings
from midas_service.images.outputs import KINDS
from midas_service.jobs import archive
from midas_service.jobs.config import JobSettings
from midas_service.jobs.queue import JobQueue, JobsUnavailable, new_job_id, owner_of
from midas_service.jobs.stats import JobsCollector
from midas_service.jobs.store import (
    SPOOL_IN_MEMORY,
    JobStore,
    NoSuchJob,
    QuotaExceeded,
    Upload,
    is_expired,
    no_room,
)
from midas_service.jobs.tasks import VIDEO_OUTPUTS, VIDEO_SCALES, input_type, video_result_name
from midas_service.video.limits import VideoLimits
from midas_service.web.errors import ApiError, BadParameter, error_response
from midas_service.web.security import InMemoryRequest, presented_key
from midas_service.web.upload import _choice, _given, read_colormap

log = logging.getLogger(__name__)

jobs = Blueprint("jobs", __name__)
PARAMETERS = ("output", "format", "colormap", "scale", "max_side")
RETRY_AFTER_S = "5"
MULTIPART_SLACK = 64 * 1024
PARTS_IN_MEMORY = 16  # file parts that may be spooled in memory (up to 1 MB each)
ASCII_DIGITS = re.compile(r"[0-9]{1,9}")
MEDIA = {".zip": "application/zip", ".mp4": "video/mp4", ".mkv": "video/x-matroska"}


class MissingFile(ApiError):
    code = "missing_file"


class BadArchive(ApiError):
    code = "bad_archive"


class JobNotFound(ApiError):
    code = "job_not_found"


class JobNotFinished(ApiError):
    code = "job_not_finished"


class TooManyParts(ApiError):
    code = "too_large"


class JobsRequest(InMemoryRequest):
    """Job uploads (up to MIDAS_JOBS_MAX_UPLOAD_MB) spool to the job store's disk; a form
    with more files than a job may hold is refused as the parts arrive."""

    file_parts = 0

    @cached_property
    def spooled(self) -> list[IO[bytes]]:
        """Every file this request spooled, closed at once if the form cannot be read."""
        return []

    def close_spooled(self) -> None:
        for spooled in self.spooled:
            spooled.close()

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        if self.path == "/jobs":
            jobs_state = current_app.extensions["midas_jobs"]
            self.file_parts += 1
            if self.file_parts > jobs_state.settings.max_entries:
                raise TooManyParts(too_many_parts_message(jobs_state.settings))
            # The first parts may stay in memory while small; later ones go straight to disk,
            # so thousands of parts cannot hold the whole body in the web worker's memory.
            in_memory = SPOOL_IN_MEMORY if self.file_parts <= PARTS_IN_MEMORY else 0
            spooled = jobs_state.store.spool(in_memory)
            self.spooled.append(spooled)
            return spooled
        return super()._get_file_stream(
            total_content_length, content_type, filename, content_length
        )


class Jobs:
    """What the routes share: the settings, the store and the queue."""

    def __init__(self, settings: JobSettings) -> None:
        self.settings = settings
        self.store = JobStore(settings.directory, settings.max_store_bytes, settings.ttl_s)
        self.queue = JobQueue(settings)


def install_jobs(app: Flask, settings: Settings, job_settings: JobSettings | None = None) -> None:
    """Register the routes, their errors and their metrics (call after install_security)."""
    job_settings = job_settings or JobSettings.from_env()
    state = Jobs(job_settings)
    app.extensions["midas_jobs"] = state
    app.request_class = JobsRequest
    app.register_blueprint(jobs)
    if state.queue.redis is not None:
        collector = JobsCollector(lambda: state.queue.queue, state.queue.redis, job_settings.prefix)
        app.extensions.setdefault("midas_collectors", []).append(collector)

    @app.errorhandler(JobsUnavailable)
    def unavailable(exc: JobsUnavailable) -> Response:
        log.warning("jobs unavailable: %s", exc)
        response = error_response("jobs_unavailable", str(exc))
        response.headers["Retry-After"] = RETRY_AFTER_S
        return response

    @app.errorhandler(QuotaExceeded)
    def full(exc: QuotaExceeded) -> Response:
        return error_response("quota_exceeded", str(exc))


def too_many_parts_message(settings: JobSettings) -> str:
    return (
        f"the form has more parts than a job takes: at most {settings.max_entries} files in "
        "multipart fields 'file' (MIDAS_JOBS_MAX_ENTRIES), besides the options; send the "
        "photos in a zip, or in several jobs"
    )


def state() -> Jobs:
    return current_app.extensions["midas_jobs"]


def current_owner() -> str:
    return owner_of(presented_key()) if current_app.config["MIDAS_SETTINGS"].api_keys else ""


@jobs.before_request
def allow_large_uploads() -> Response | None:
    limit = state().settings.max_upload_bytes
    request.max_content_length = limit + MULTIPART_SLACK
    request.max_form_parts = state().settings.max_entries + len(PARAMETERS)
    if request.method == "POST" and (request.content_length or 0) > limit + MULTIPART_SLACK:
        return error_response("too_large", upload_too_large_message())
    return None


def upload_too_large_message() -> str:
    return (
        f"the upload is larger than the {state().settings.max_upload_mb:g} MB limit of "
        "/jobs (MIDAS_JOBS_MAX_UPLOAD_MB)"
    )


def read_job_options(req: Request, kind: str, default_colormap: str) -> dict[str, Any]:
    unknown = sorted((set(req.args) | set(req.form)) - set(PARAMETERS))
    if unknown:
        raise BadParameter(
            f"unknown parameter {', '.join(unknown)}; accepted: {', '.join(PARAMETERS)}"
        )
    colormap = read_colormap(req, default_colormap)
    given = set(req.args) | set(req.form)
    if kind == "photos":
        if given & {"scale", "max_side"}:
            raise BadParameter("scale and max_side apply to a video, not to photos")
        output = _choice(req, "output", tuple(KINDS), "heatmap")
        fmt = _choice(req, "format", KINDS[output].formats, KINDS[output].default_format)
        return {"output": output, "format": fmt, "colormap": colormap}
    if "format" in given:
        raise BadParameter("format applies to photos; a video's output decides its container")
    output = _choice(req, "output", tuple(VIDEO_OUTPUTS), "heatmap")
    scale = _choice(req, "scale", VIDEO_SCALES, "clip")
    if VIDEO_OUTPUTS[output] == "depth16" and scale != "clip":
        raise BadParameter("output=depth is quantised with one range for the clip: use scale=clip")
    max_side = read_max_side(req)
    return {"output": output, "colormap": colormap, "scale": scale, "max_side": max_side}


def read_max_side(req: Request) -> int | None:
    """``max_side``: ASCII digits only (``int()`` also takes "²", "٣" and "1_0"), given once,
    from 32 up to the longest frame side a video may have (MIDAS_VIDEO_MAX_SIDE)."""
    raw = _given(req, "max_side")
    if raw is None:
        return None
    most = VideoLimits.from_env().max_side
    if not (ASCII_DIGITS.fullmatch(raw) and 32 <= int(raw) <= most):
        raise BadParameter(
            f"max_side must be a whole number of pixels from 32 to {most} "
            f"(MIDAS_VIDEO_MAX_SIDE); got {raw[:40]!r}"
        )
    return int(raw)


def read_uploads() -> tuple[str, list[Upload]]:
    """(kind, uploads): photos (zips and photos) or one video, judged by their first bytes."""
    try:
        form = request.files
    except RequestEntityTooLarge as exc:
        if request.content_length is not None:  # Werkzeug's count of all parts, fields included
            raise TooManyParts(too_many_parts_message(state().settings)) from exc
        raise TooManyParts(upload_too_large_message()) from exc  # a chunked body, cut
    except OSError as exc:  # spooling the upload to the store's disk
        full = no_room(exc, state().store.root)
        if full is None:
            raise
        # The parser's files are only reachable from this exception's traceback now: close
        # them here, so the disk has its room back before the answer, not at a later GC.
        if isinstance(request, JobsRequest):
            request.close_spooled()
        raise full from None
    files = form.getlist("file")
    extra = sorted(set(form) - {"file"})
    if extra:
        raise BadParameter(f"send the files in multipart fields named 'file', not {extra}")
    if not files:
        raise MissingFile("send a video, a zip of photos, or photos in multipart fields 'file'")
    uploads = []
    for position, item in enumerate(files):
        head = item.stream.read(16)
        item.stream.seek(0)
        name = item.filename or f"file-{position}"
        if not head:
            raise MissingFile(f"the file {name!r} is empty")
        uploads.append(Upload(name, item.stream, input_type(head)))
    videos = [upload for upload in uploads if upload.type == "video"]
    if videos and len(uploads) > 1:
        raise BadParameter(
            "a video is a job of its own: send one video, or photos and zips of photos "
            f"(not a photo or zip: {videos[0].name!r})"
        )
    return ("video" if videos else "photos"), uploads


def count_entries(uploads: list[Upload], limits: archive.ArchiveLimits) -> int:
    """The photos of a photo job: one per photo, the files of each zip."""
    entries = 0
    for upload in uploads:
        if upload.type == "zip":
            entries += zip_files(upload.stream, upload.name, limits, entries)
        else:
            entries += 1
        if entries > limits.max_entries:
            raise BadArchive(
                f"the files hold more than {limits.max_entries} entries together "
                "(MIDAS_JOBS_MAX_ENTRIES)"
            )
    return entries


def zip_files(stream: IO[bytes], name: str, limits: archive.ArchiveLimits, taken: int) -> int:
    """The number of files in the zip ``stream``; BadArchive when it cannot be read, holds no
    file, or holds more entries than the job has left after ``taken``. The entries are
    counted from the central directory's end before zipfile parses any of them."""
    room = limits.max_entries - taken
    try:
        with archive.open_stream(stream, replace(limits, max_entries=room)) as zipped:
            files = len(archive.list_entries(zipped, limits))
    except archive.ArchiveRefused as exc:
        if taken and "MIDAS_JOBS_MAX_ENTRIES" in str(exc):
            raise BadArchive(
                f"{name}: the files hold more than {limits.max_entries} entries together "
                "(MIDAS_JOBS_MAX_ENTRIES)"
            ) from exc
        raise BadArchive(f"{name}: {exc}") from exc
    finally:
        stream.seek(0)
    return files


def received_bytes(uploads: list[Upload]) -> int:
    total = 0
    for upload in uploads:
        total += upload.stream.seek(0, 2)
        upload.stream.seek(0)
    return total


def urls(job_id: str) -> dict[str, str]:
    return {
        "status_url": url_for("jobs.status", job_id=job_id),
        "result_url": url_for("jobs.result", job_id=job_id),
    }


@jobs.post("/jobs")
def submit() -> Response:
    jobs_state = state()
    settings = current_app.config["MIDAS_SETTINGS"]
    jobs_state.queue.ping()  # 503 before reading a large upload that could not be queued
    jobs_state.store.check_room(request.content_length or 0)
    limits = archive.ArchiveLimits(
        jobs_state.settings.max_entries,
        jobs_state.settings.max_unzipped_bytes,
        settings.max_upload_bytes,
    )
    kind, uploads = read_uploads()
    options = read_job_options(request, kind, settings.colormap)
    entries = count_entries(uploads, limits) if kind == "photos" else None
    job_id, owner = new_job_id(), current_owner()
    with jobs_state.queue.store_lock():  # the bytes received, not the declared length
        jobs_state.store.check_room(received_bytes(uploads))
        jobs_state.store.create(job_id, owner, kind, options, uploads)
    try:
        jobs_state.queue.enqueue(job_id, owner, kind, entries)
    except BaseException:
        jobs_state.store.remove(job_id)
        raise
    log.info("job %s queued: %s, %d inputs", job_id, kind, len(uploads))
    response = jsonify(id=job_id, status="queued", **urls(job_id))
    response.status_code = 202
    response.headers["Location"] = url_for("jobs.status", job_id=job_id)
    return response


def find(job_id: str) -> tuple[Any, dict[str, Any]]:
    """The RQ job and its folder's record, if this caller may see them and they live."""
    jobs_state = state()
    try:
        record = jobs_state.store.read(job_id)
    except NoSuchJob:
        record = None
    job = jobs_state.queue.fetch(job_id, current_owner()) if record else None
    if job is None or record is None or is_expired(record):
        raise JobNotFound(f"no job {job_id!r}: never made, expired, deleted, or not yours")
    return job, record


@jobs.get("/jobs/<job_id>")
def status(job_id: str) -> Response:
    job, record = find(job_id)
    body = state().queue.describe(job)
    body.update(urls(job_id), created=record["created"], expires=record["expires"])
    return jsonify(body)


@jobs.get("/jobs/<job_id>/result")
def result(job_id: str) -> Response:
    job, record = find(job_id)
    current = state().queue.public_status(job)
    if current != "finished":
        raise JobNotFinished(f"job {job_id} is {current}; its result exists once it is finished")
    folder = state().store.folder(job_id)
    name = video_result_name(record["options"]) if record["kind"] == "video" else "result.zip"
    path = folder / name
    if not path.is_file():
        raise JobNotFound(f"the result of job {job_id} is gone (expired or deleted)")
    suffix = path.suffix
    return send_file(
        path,
        mimetype=MEDIA[suffix],
        as_attachment=suffix == ".zip",
        download_name=f"depth-{job_id}{suffix}",
        conditional=True,  # Range requests: a <video> element seeks
        max_age=0,
    )


@jobs.delete("/jobs/<job_id>")
def cancel(job_id: str) -> Response:
    """A queued or running job is canceled (202, its status); a finished, failed or canceled
    one is removed with its files (204)."""
    job, _ = find(job_id)
    jobs_state = state()
    current = jobs_state.queue.public_status(job)
    if current in ("queued", "started"):
        body = {"id": job_id, "status": jobs_state.queue.cancel(job), **urls(job_id)}
        response = jsonify(body)
        response.status_code = 202
        return response
    jobs_state.queue.call(job.delete)
    jobs_state.store.remove(job_id)
    return Response(status=204)


def openapi_paths(settings: JobSettings) -> dict[str, Any]:
    """The /jobs part of the OpenAPI document."""
    from midas_service.images.outputs import FORMATS
    from midas_service.images.visualize import COLORMAPS

    def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "schema": schema,
            "description": description,
        }

    job_id = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
    status_schema = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string", "enum": ["photos", "video"]},
            "status": {
                "type": "string",
                "enum": ["queued", "started", "finished", "failed", "canceled"],
            },
            "progress": {
                "type": "object",
                "properties": {"done": {"type": "integer"}, "total": {"type": ["integer", "null"]}},
            },
            "eta_s": {"type": ["number", "null"]},
            "error": {"type": ["string", "null"]},
            "attempts": {"type": "integer"},
            "summary": {"type": "object"},
            "status_url": {"type": "string"},
            "result_url": {"type": "string"},
            "created": {"type": "number"},
            "expires": {"type": "number"},
        },
    }
    error = {"$ref": "#/components/schemas/Error"}

    def errors(*codes: str) -> dict[str, Any]:
        from midas_service.web.errors import ERROR_CODES

        by_status: dict[str, list[str]] = {}
        for code in codes:
            by_status.setdefault(str(ERROR_CODES[code].status), []).append(
                f"`{code}`: {ERROR_CODES[code].meaning}"
            )
        return {
            status: {
                "description": "; ".join(lines),
                "content": {"application/json": {"schema": error}},
            }
            for status, lines in sorted(by_status.items())
        }

    return {
        "/jobs": {
            "post": {
                "summary": "Submit a video, a zip of photos, or photos as a job",
                "parameters": [
                    query(
                        "output",
                        {"type": "string", "enum": list(KINDS), "default": "heatmap"},
                        "as for /predict; a video takes heatmap, side or depth (16-bit FFV1)",
                    ),
                    query(
                        "format",
                        {"type": "string", "enum": sorted(FORMATS)},
                        "photos only: as for /predict",
                    ),
                    query(
                        "colormap", {"type": "string", "enum": list(COLORMAPS)}, "heatmap colours"
                    ),
                    query(
                        "scale",
                        {"type": "string", "enum": list(VIDEO_SCALES), "default": "clip"},
                        "video only: one depth range for the clip, a running one, or per frame",
                    ),
                    query(
                        "max_side",
                        {
                            "type": "integer",
                            "minimum": 32,
                            "maximum": VideoLimits.from_env().max_side,
                        },
                        "video only: downscale frames to this longer side first (ASCII digits, "
                        "given once; at most MIDAS_VIDEO_MAX_SIDE)",
                    ),
                ],
                "requestBody": {
                    "required": True,
                    "description": f"one or more multipart fields `file`; at most "
                    f"{settings.max_upload_mb:g} MB in all",
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {
                                    "file": {
                                        "type": "array",
                                        "items": {"type": "string", "format": "binary"},
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "202": {
                        "description": "queued; `Location` is the status URL",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "content": {"application/json": {"schema": status_schema}},
                    },
                    **errors(
                        "bad_parameter",
                        "missing_file",
                        "bad_archive",
                        "too_large",
                        "quota_exceeded",
                        "jobs_unavailable",
                    ),
                },
            }
        },
        "/jobs/{job_id}": {
            "get": {
                "summary": "A job's status and progress",
                "parameters": [job_id],
                "responses": {
                    "200": {
                        "description": "the status",
                        "content": {"application/json": {"schema": status_schema}},
                    },
                    **errors("job_not_found", "jobs_unavailable"),
                },
            },
            "delete": {
                "summary": "Cancel a queued or running job (202), or remove a finished one (204)",
                "parameters": [job_id],
                "responses": {
                    "202": {
                        "description": "cancel requested",
                        "content": {"application/json": {"schema": status_schema}},
                    },
                    "204": {"description": "removed with its files"},
                    **errors("job_not_found", "jobs_unavailable"),
                },
            },
        },
        "/jobs/{job_id}/result": {
            "get": {
                "summary": "The result: a zip of /predict's outputs per photo (and report.json), "
                "or the video",
                "parameters": [job_id],
                "responses": {
                    "200": {
                        "description": "the result",
                        "content": {
                            m: {"schema": {"type": "string", "format": "binary"}}
                            for m in MEDIA.values()
                        },
                    },
                    **errors("job_not_found", "job_not_finished", "jobs_unavailable"),
                },
            }
        },
    }
