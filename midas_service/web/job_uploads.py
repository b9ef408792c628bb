"""A /jobs upload: which files it holds (photos, zips of photos, a video), judged by their
bytes, and how many photos the zips hold, before anything is stored."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge

from midas_service.config import JobSettings
from midas_service.errors import BadArchive, BadParameter, MissingFile, QuotaExceeded, TooLarge
from midas_service.jobs import archive
from midas_service.jobs.store import Upload, no_room
from midas_service.jobs.tasks import input_type

if TYPE_CHECKING:
    from midas_service.web.jobs import JobsState


def too_many_parts_message(settings: JobSettings) -> str:
    return (
        f"the form has more parts than a job takes: at most {settings.max_entries} files in "
        "multipart fields 'file' (MIDAS_JOBS_MAX_ENTRIES), besides the options; send the "
        "photos in a zip, or in several jobs"
    )


def full_disk(exc: OSError, root: Path) -> QuotaExceeded:
    """QuotaExceeded for a store disk that filled up while the upload was spooled; any other
    OSError goes on as it is."""
    full = no_room(exc, root)
    if full is None:
        raise exc
    return full


def upload_too_large_message(settings: JobSettings) -> str:
    return (
        f"the upload is larger than the {settings.max_upload_mb:g} MB limit of "
        "/jobs (MIDAS_JOBS_MAX_UPLOAD_MB)"
    )


def read_uploads(request: Request, jobs_state: JobsState) -> tuple[str, list[Upload]]:
    """(kind, uploads): photos (zips and photos) or one video, judged by their first bytes."""
    try:
        form = request.files
    except RequestEntityTooLarge as exc:
        if request.content_length is not None:  # Werkzeug's count of all parts, fields included
            raise TooLarge(too_many_parts_message(jobs_state.settings)) from exc
        raise TooLarge(
            upload_too_large_message(jobs_state.settings)
        ) from exc  # a chunked body, cut
    except OSError as exc:  # spooling the upload to the store's disk
        refusal = full_disk(exc, jobs_state.store.root)
        # The parser's files are only reachable from this exception's traceback now: close
        # them here, so the disk has its room back before the answer, not at a later GC.
        close_spooled = getattr(request, "close_spooled", None)
        if close_spooled is not None:
            close_spooled()
        raise refusal from None
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
