"""What a worker runs for one job: photos to a zip of /predict's answers, or a video.

The worker loads the model once and hands it here with :func:`configure`; RQ then calls
:func:`run` with the job's id, and everything else comes from the job's folder. Each photo
goes through ``midas_service.answer.answer``, the very path of /predict, so each output holds
the bytes /predict gives for that photo and those options.
"""

from __future__ import annotations

import logging
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from midas_service.answer import InputLimits, OutputTooLarge, answer
from midas_service.config import JobSettings, VideoLimits
from midas_service.errors import ServiceError
from midas_service.images.decode import ImageError, sniff_format
from midas_service.images.outputs import RenderOptions
from midas_service.inference.pipeline import DepthEstimator
from midas_service.jobs import stats
from midas_service.jobs.archive import (
    ArchiveLimits,
    ArchiveRefused,
    Entry,
    count_entries,
    read_entries,
    safe_name,
)
from midas_service.jobs.queue import cancel_key
from midas_service.jobs.store import JobStore, write_json
from midas_service.options import VIDEO_SUFFIX

log = logging.getLogger(__name__)

REPORT_NAME = "report.json"
PROGRESS_EVERY_S = 0.5  # at most two meta writes a second
PROBLEMS_IN_STATUS = 20  # the status shows this many per-entry problems; report.json all
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class JobInputError(ValueError):
    """The job's input cannot be processed; the message is for the user."""


class JobCanceled(Exception):
    """The owner canceled the job while it ran."""


@dataclass
class Context:
    settings: JobSettings
    store: JobStore
    estimator: DepthEstimator
    limits: InputLimits
    redis: Any
    video: VideoLimits = field(default_factory=VideoLimits)  # read once, at the worker's start


_context: Context | None = None


def configure(context: Context) -> None:
    global _context
    _context = context


def input_type(head: bytes) -> str:
    """zip, photo or video, judged by the first bytes (anything else is left to FFmpeg)."""
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if sniff_format(head):
        return "photo"
    return "video"


class Progress:
    """Writes {done, total} and the ETA into job.meta; raises JobCanceled once asked to."""

    def __init__(self, job: Any, context: Context) -> None:
        self.job, self.context = job, context
        self.started = time.monotonic()
        self.last = 0.0
        self.key = cancel_key(context.settings.prefix, job.id) if job is not None else ""
        self.total: int | None = None

    def __call__(self, done: int, total: int | None, force: bool = False) -> None:
        self.total = total if total is not None else self.total
        now = time.monotonic()
        if not force and now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        if self.job is None:
            return
        from redis.exceptions import RedisError

        try:
            canceled = self.context.redis.exists(self.key)
            if not canceled:
                self.write(now, done, total)
        except RedisError as exc:  # a blip: the job goes on; the next step tries again
            log.warning("job %s: progress not written, Redis unreachable (%s)", self.job.id, exc)
            return
        if canceled:
            raise JobCanceled("canceled by its owner")

    def write(self, now: float, done: int, total: int | None) -> None:
        elapsed = now - self.started
        eta = elapsed / done * (total - done) if total and done else None
        self.job.meta["progress"] = {"done": done, "total": total}
        self.job.meta["eta_s"] = round(eta, 1) if eta is not None else None
        self.job.save_meta()

    def finish(self) -> None:
        """Write done == total: the throttled calls may have skipped the last steps."""
        if self.total is not None:
            self(self.total, self.total, force=True)


def run(job_id: str) -> dict[str, Any]:
    """RQ's entry point: run the job in its folder; the summary becomes RQ's result."""
    from rq import get_current_job

    if _context is None:
        raise RuntimeError("the worker did not configure midas_service.jobs.tasks")
    context = _context
    job = get_current_job()
    record = context.store.read(job_id)
    folder = context.store.folder(job_id)
    context.store.remove_partial(job_id)  # what a killed worker's attempt left
    if job is not None:
        job.meta["attempts"] = int(job.meta.get("attempts", 0)) + 1
        job.meta["started"] = time.time()
        job.save_meta()
    progress = Progress(job, context)
    progress(0, None, force=True)  # a cancel before the start stops it here
    start = time.monotonic()
    if record["kind"] == "video":
        summary = run_video(record, folder, context, progress)
    else:
        summary = run_photos(record, folder, context, progress)
    progress.finish()
    stats.record_finished(
        context.redis, context.settings.prefix, record["kind"], time.monotonic() - start
    )
    if job is not None:
        job.meta["summary"] = summary
        job.meta["eta_s"] = 0
        job.save_meta()
    return summary


def render_options(options: dict[str, Any]) -> RenderOptions:
    return RenderOptions(options["output"], options["format"], options["colormap"])


def photo_entries(record: dict[str, Any], folder: Path, limits: ArchiveLimits) -> Iterator[Entry]:
    for position, item in enumerate(record["inputs"]):
        path = folder / item["file"]
        if item.get("type") == "zip":
            yield from read_entries(path, limits)
            continue
        name = item["name"] or f"photo-{position}"
        data = path.read_bytes()
        if len(data) > limits.max_entry_bytes:
            yield Entry(name, safe_name(name.rsplit("/", 1)[-1]), problem="over the photo limit")
        else:
            yield Entry(name, safe_name(name.rsplit("/", 1)[-1]) or f"photo-{position}", data=data)


def archive_limits(context: Context) -> ArchiveLimits:
    settings = context.settings
    return ArchiveLimits(
        settings.max_entries, settings.max_unzipped_bytes, context.limits.max_bytes
    )


def count_photos(record: dict[str, Any], folder: Path, limits: ArchiveLimits) -> int:
    return sum(
        count_entries(folder / item["file"], limits) if item.get("type") == "zip" else 1
        for item in record["inputs"]
    )


class OutputNames:
    """Unique names in the result zip: the entry's path with the output's suffix."""

    def __init__(self) -> None:
        self.taken = {REPORT_NAME}

    def __call__(self, name: str | None, position: int, suffix: str) -> str:
        base = name or f"entry-{position}"
        try:
            wanted = str(PurePosixPath(base).with_suffix(suffix))
        except ValueError:
            wanted = f"{base}{suffix}"
        candidate, counter = wanted, 2
        while candidate in self.taken:
            stem = wanted[: -len(suffix)] if wanted.endswith(suffix) else wanted
            candidate = f"{stem}-{counter}{suffix}"
            counter += 1
        self.taken.add(candidate)
        return candidate


def error_code(exc: Exception) -> str:
    return exc.code if isinstance(exc, ServiceError) else "bad_input"


def run_photos(
    record: dict[str, Any], folder: Path, context: Context, progress: Progress
) -> dict[str, Any]:
    options = render_options(record["options"])
    limits = archive_limits(context)
    try:
        total = count_photos(record, folder, limits)
        progress(0, total, force=True)
        names = OutputNames()
        report: list[dict[str, Any]] = []
        result = folder / "result.zip"
        partial = folder / ".result.zip.part"
        with zipfile.ZipFile(partial, "w") as out:
            for position, entry in enumerate(photo_entries(record, folder, limits)):
                report.append(render_entry(entry, position, options, context, names, out))
                progress(position + 1, total)
            summary = summarize(report, total)
            out.writestr(REPORT_NAME, _json(report))
    except ArchiveRefused as exc:
        raise JobInputError(str(exc)) from exc
    except BaseException:
        (folder / ".result.zip.part").unlink(missing_ok=True)
        raise
    if summary["ok"] == 0:
        partial.unlink(missing_ok=True)
        first = next((item for item in report if item.get("error")), None)
        detail = f": {first['name']}: {first['error']}" if first else ""
        raise JobInputError(f"no photo could be processed ({len(report)} inputs){detail}")
    partial.replace(result)
    write_json(folder / REPORT_NAME, report)
    return summary


def render_entry(
    entry: Entry,
    position: int,
    options: RenderOptions,
    context: Context,
    names: OutputNames,
    out: zipfile.ZipFile,
) -> dict[str, Any]:
    item: dict[str, Any] = {"name": entry.name}
    if entry.data is None:
        item.update(status="skipped", error=entry.problem)
        return item
    try:
        result = answer(entry.data, options, context.estimator, context.limits)
    except (ImageError, OutputTooLarge) as exc:
        item.update(status="failed", code=error_code(exc), error=str(exc))
        return item
    output = names(entry.safe_name, position, result.suffix)
    compress = zipfile.ZIP_STORED if result.suffix in (".jpg", ".png") else zipfile.ZIP_DEFLATED
    out.writestr(zipfile.ZipInfo(output, time.localtime()[:6]), result.body, compress)
    item.update(status="ok", output=output)
    return item


def summarize(report: list[dict[str, Any]], total: int) -> dict[str, Any]:
    states = ("ok", "failed", "skipped")
    counts = {state: sum(1 for r in report if r["status"] == state) for state in states}
    problems = [r for r in report if r["status"] != "ok"][:PROBLEMS_IN_STATUS]
    return {**counts, "total": total, "problems": problems}


def _json(value: object) -> str:
    import json

    return json.dumps(value, indent=1)


def video_options(options: dict[str, Any], limits: VideoLimits) -> Any:
    from midas_service.video.options import VideoOptions

    return VideoOptions(
        output=options["output"],
        colormap=options["colormap"],
        scale=options["scale"],
        max_side=options.get("max_side"),
        limits=limits,
    )


def video_result_name(options: dict[str, Any]) -> str:
    return "result" + VIDEO_SUFFIX[options["output"]]


def run_video(
    record: dict[str, Any], folder: Path, context: Context, progress: Progress
) -> dict[str, Any]:
    from midas_service.video.convert import convert_video
    from midas_service.video.errors import VideoError

    source = folder / record["inputs"][0]["file"]
    target = folder / video_result_name(record["options"])
    try:
        # The clip scale's raw depth goes into the job's folder: on the store's volume, counted
        # in its quota, and removed with the job (or by the next attempt after a kill).
        options = video_options(record["options"], replace(context.video, spill_dir=folder))
        options.validate()
    except ValueError as exc:
        raise JobInputError(str(exc)) from exc
    try:
        report = convert_video(source, target, context.estimator, options, progress)
    except VideoError as exc:
        raise JobInputError(str(exc)) from exc
    summary = {"ok": 1, "failed": 0, "skipped": 0, "total": 1, "video": report.to_dict()}
    write_json(folder / REPORT_NAME, summary)
    return summary
