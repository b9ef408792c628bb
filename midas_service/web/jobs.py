"""The /jobs routes: submit a video or photos (a zip, or several files), poll, fetch, cancel.

The web side only stores the upload in a job folder and puts the job's id on the queue; a
worker process (``python -m midas_service worker``) does the work. Redis being down makes
/jobs answer 503 ``jobs_unavailable`` and leaves /predict alone. Reading the upload is
``job_uploads.py``; spooling it to the store, ``multipart.py``; the OpenAPI part, ``openapi.py``.
"""

from __future__ import annotations

import logging
from typing import Any

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

from midas_service import options
from midas_service.config import JobSettings, Settings
from midas_service.errors import JobNotFinished, JobNotFound, TooLarge
from midas_service.jobs import archive
from midas_service.jobs.queue import JobQueue, new_job_id, owner_of
from midas_service.jobs.stats import JobsCollector
from midas_service.jobs.store import JobStore, NoSuchJob, is_expired
from midas_service.jobs.tasks import video_result_name
from midas_service.web.job_uploads import (
    count_entries,
    read_uploads,
    received_bytes,
    upload_too_large_message,
)
from midas_service.web.security import presented_key
from midas_service.web.upload import given

log = logging.getLogger(__name__)

jobs = Blueprint("jobs", __name__)
MULTIPART_SLACK = 64 * 1024
MEDIA = {".zip": "application/zip", ".mp4": "video/mp4", ".mkv": "video/x-matroska"}


class JobsState:
    """What the routes share: the settings, the store and the queue."""

    def __init__(self, settings: JobSettings) -> None:
        self.settings = settings
        self.store = JobStore(settings.directory, settings.max_store_bytes, settings.ttl_s)
        self.queue = JobQueue(settings)


def install_jobs(app: Flask, settings: JobSettings) -> None:
    """Register the routes and their metrics."""
    state = JobsState(settings)
    app.extensions["midas_jobs"] = state
    app.register_blueprint(jobs)
    if state.queue.redis is not None:
        collector = JobsCollector(lambda: state.queue.queue, state.queue.redis, settings.prefix)
        app.extensions.setdefault("midas_collectors", []).append(collector)


def state() -> JobsState:
    return current_app.extensions["midas_jobs"]


def current_owner() -> str:
    return owner_of(presented_key()) if current_app.config["MIDAS_SETTINGS"].api_keys else ""


@jobs.before_request
def allow_large_uploads() -> None:
    settings = state().settings
    limit = settings.max_upload_bytes
    request.max_content_length = limit + MULTIPART_SLACK
    request.max_form_parts = settings.max_entries + len(options.JOB_NAMES)
    if request.method == "POST" and (request.content_length or 0) > limit + MULTIPART_SLACK:
        raise TooLarge(upload_too_large_message(settings))


def read_job_options(req: Request, kind: str, settings: Settings) -> dict[str, Any]:
    return options.job_options(given(req), kind, settings.colormap, settings.video.max_side)


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
    kind, uploads = read_uploads(request, jobs_state)
    job_options = read_job_options(request, kind, settings)
    entries = count_entries(uploads, limits) if kind == "photos" else None
    job_id, owner = new_job_id(), current_owner()
    with jobs_state.queue.store_lock():  # the bytes received, not the declared length
        jobs_state.store.check_room(received_bytes(uploads))
        jobs_state.store.create(job_id, owner, kind, job_options, uploads)
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
