"""The job folders on ``MIDAS_JOBS_DIR``: inputs and outputs as files, never in Redis.

Layout (one folder per job, named by its id)::

    <MIDAS_JOBS_DIR>/<id>/job.json      what the job is: owner, kind, options, inputs, expiry
    <MIDAS_JOBS_DIR>/<id>/input/0.bin   the uploaded files, renamed by position
    <MIDAS_JOBS_DIR>/<id>/result.zip    the outputs (result.mp4 / result.mkv for a video)
    <MIDAS_JOBS_DIR>/<id>/report.json   per-entry outcome of a photo job
    <MIDAS_JOBS_DIR>/.incoming/         uploads being received (anonymous files)

The store is bounded (``MIDAS_JOBS_MAX_MB``, all folders together) and every folder expires
``MIDAS_JOBS_TTL_S`` after it was made; :meth:`JobStore.sweep` removes expired folders and is
run by the workers' maintenance and before each new job is accepted.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from midas_service.errors import QuotaExceeded

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
PARTIAL = (".*.part", "midas-depth-*.f32")  # files of an attempt in progress
SPOOL_IN_MEMORY = 1024 * 1024  # uploads smaller than this never touch the disk while received


def no_room(exc: OSError, path: Path) -> QuotaExceeded | None:
    """QuotaExceeded for a write that found the store's disk full, else None."""
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    return QuotaExceeded(
        f"the job store's disk is full ({path}: {exc.strerror}); retry when older jobs have "
        "expired or been deleted"
    )


class NoSuchJob(Exception):
    """No folder for this id (never made, expired, or removed)."""


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the name the client gave and an open stream of its bytes."""

    name: str
    stream: IO[bytes]
    type: str  # zip, photo or video


def folder_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue  # removed meanwhile (a sweep, a finished write)
    return total


class JobStore:
    def __init__(self, root: Path, max_bytes: int, ttl_s: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s

    def ensure(self) -> None:
        (self.root / ".incoming").mkdir(parents=True, exist_ok=True)

    def spool(self, in_memory: int = SPOOL_IN_MEMORY) -> IO[bytes]:
        """A file for an upload being received: in memory while under ``in_memory`` bytes,
        then an anonymous file on the store's own disk (the upload may be far larger than the
        memory limit)."""
        self.ensure()
        if in_memory <= 0:  # SpooledTemporaryFile(0) would never leave memory
            return tempfile.TemporaryFile(dir=self.root / ".incoming")
        return tempfile.SpooledTemporaryFile(in_memory, dir=self.root / ".incoming")  # type: ignore[call-overload]

    def folder(self, job_id: str) -> Path:
        if not JOB_ID.match(job_id):
            raise NoSuchJob(job_id)
        return self.root / job_id

    def usage(self) -> int:
        return folder_size(self.root) if self.root.exists() else 0

    def check_room(self, incoming: int) -> None:
        """Raise QuotaExceeded unless ``incoming`` more bytes fit (expired folders first go)."""
        self.sweep()
        used = self.usage()
        if used + incoming > self.max_bytes:
            raise QuotaExceeded(
                f"the job store is full: {used / 2**20:.1f} MB used of "
                f"{self.max_bytes / 2**20:.0f} MB (MIDAS_JOBS_MAX_MB), this upload needs "
                f"{incoming / 2**20:.1f} MB; retry when older jobs have expired or been deleted"
            )

    def create(
        self, job_id: str, owner: str, kind: str, options: dict[str, Any], uploads: list[Upload]
    ) -> Path:
        """Write the job's folder: its inputs, then job.json last (a folder without job.json
        is one being made, or one a crash left; the sweep removes it after the TTL)."""
        folder = self.folder(job_id)
        inputs = folder / "input"
        inputs.mkdir(parents=True)
        listed = []
        try:
            for position, upload in enumerate(uploads):
                path = inputs / f"{position}.bin"
                upload.stream.seek(0)
                with open(path, "wb") as out:
                    shutil.copyfileobj(upload.stream, out, 1024 * 1024)
                listed.append(
                    {
                        "name": upload.name,
                        "type": upload.type,
                        "file": str(path.relative_to(folder)),
                        "size": path.stat().st_size,
                    }
                )
            created = time.time()
            record = {
                "id": job_id,
                "owner": owner,
                "kind": kind,
                "options": options,
                "inputs": listed,
                "created": created,
                "expires": created + self.ttl_s,
            }
            write_json(folder / "job.json", record)
        except BaseException as exc:
            shutil.rmtree(folder, ignore_errors=True)
            full = no_room(exc, self.root) if isinstance(exc, OSError) else None
            if full is not None:
                raise full from exc
            raise
        return folder

    def read(self, job_id: str) -> dict[str, Any]:
        try:
            return json.loads((self.folder(job_id) / "job.json").read_text())
        except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError) as exc:
            raise NoSuchJob(job_id) from exc

    def remove_partial(self, job_id: str) -> list[str]:
        """Remove what an interrupted attempt leaves in the job's folder (``.*.part`` files
        being written, the clip scale's ``midas-depth-*.f32`` spill); the names removed."""
        removed = []
        folder = self.folder(job_id)
        for pattern in PARTIAL:
            for path in folder.glob(pattern):
                path.unlink(missing_ok=True)
                removed.append(path.name)
        if removed:
            log.info("job %s: removed %s left by an interrupted attempt", job_id, removed)
        return removed

    def remove(self, job_id: str) -> None:
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    def expired(self, now: float | None = None) -> Iterable[str]:
        now = time.time() if now is None else now
        if not self.root.is_dir():
            return
        for entry in os.scandir(self.root):
            if not entry.is_dir(follow_symlinks=False) or not JOB_ID.match(entry.name):
                continue
            try:
                expires = json.loads(Path(entry.path, "job.json").read_text())["expires"]
            except (OSError, ValueError, KeyError):
                try:  # half-made folder: judged by its age
                    expires = entry.stat(follow_symlinks=False).st_mtime + self.ttl_s
                except FileNotFoundError:
                    continue
            if expires <= now:
                yield entry.name

    def sweep(self, now: float | None = None) -> list[str]:
        """Remove every expired job folder; the ids removed."""
        removed = list(self.expired(now))
        for job_id in removed:
            self.remove(job_id)
        if removed:
            log.info("removed %d expired job folders", len(removed))
        return removed


def write_json(path: Path, value: object) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True))
    os.replace(tmp, path)


def is_expired(record: dict[str, Any], now: float | None = None) -> bool:
    return float(record.get("expires", 0)) <= (time.time() if now is None else now)
