"""Enqueue, look up and cancel jobs on RQ; the job's public status from RQ's and its meta.

Ids are ``secrets.token_urlsafe`` (144 random bits). With API keys on, each job records a
hash of the key that made it, and only that key sees it: any other gets "no such job".
Progress ({done, total}) and the ETA are written by the worker into ``job.meta``; a cancel
request is a separate Redis key, so that it cannot be overwritten by the worker's progress.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterator
from typing import Any

from midas_service.config import JobSettings
from midas_service.errors import JobsUnavailable

TASK = "midas_service.jobs.tasks.run"
STORE_LOCK_S = 300  # longest a web process may hold the store lock (copying one upload)
STORE_LOCK_WAIT_S = 60  # longest an upload waits for it, then 503 jobs_unavailable
# RQ's states, as this API names them
RQ_STATUS = {
    "queued": "queued",
    "deferred": "queued",
    "scheduled": "queued",  # a retry waiting its turn
    "started": "started",
    "finished": "finished",
    "failed": "failed",
    "stopped": "canceled",
    "canceled": "canceled",
}


def new_job_id() -> str:
    return secrets.token_urlsafe(18)


def owner_of(key: bytes | None) -> str:
    """Who may see a job: a hash of the API key that made it ("" when keys are off)."""
    return hashlib.sha256(b"midas-job-owner:" + key).hexdigest() if key else ""


def cancel_key(prefix: str, job_id: str) -> str:
    return f"{prefix}jobs:cancel:{job_id}"


def connect(url: str, timeout_s: float) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


class JobQueue:
    """The web side of the queue. Every call raises JobsUnavailable when Redis is down."""

    def __init__(self, settings: JobSettings, timeout_s: float = 2.0) -> None:
        from redis.exceptions import RedisError
        from rq import Queue

        self.settings = settings
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError)
        if not settings.redis_url:
            self.redis = None
            return
        self.redis = connect(settings.redis_url, timeout_s)
        self.queue = Queue(settings.queue, connection=self.redis)

    def _require(self) -> None:
        if self.redis is None:
            raise JobsUnavailable("jobs need a Redis: set REDIS_URL")

    def call(self, function, *args, **kwargs):
        """Run ``function``, turning any Redis failure into JobsUnavailable."""
        self._require()
        try:
            return function(*args, **kwargs)
        except self._errors as exc:
            raise JobsUnavailable(f"the job queue is unreachable: {exc}") from exc

    @contextlib.contextmanager
    def store_lock(self) -> Iterator[None]:
        """Held while a job's folder is made, by every web process on this Redis: the quota
        check and the files it counts happen as one step, so parallel uploads cannot all
        pass one check and overshoot MIDAS_JOBS_MAX_MB together."""
        from redis.exceptions import LockError

        self._require()
        lock = self.redis.lock(  # type: ignore[union-attr]
            f"{self.settings.prefix}jobs:store-lock",
            timeout=STORE_LOCK_S,
            blocking_timeout=STORE_LOCK_WAIT_S,
        )
        try:
            acquired = self.call(lock.acquire)
        except LockError as exc:
            raise JobsUnavailable(f"the job store is busy: {exc}") from exc
        if not acquired:
            raise JobsUnavailable("the job store is busy with other uploads; retry")
        try:
            yield
        finally:
            with contextlib.suppress(LockError, *self._errors):  # expired: its TTL freed it
                lock.release()

    def ping(self) -> None:
        self.call(lambda: self.redis.ping())  # type: ignore[union-attr]

    def enqueue(self, job_id: str, owner: str, kind: str, total: int | None) -> Any:
        from rq import Retry

        settings = self.settings
        return self.call(
            self.queue.enqueue,
            TASK,
            job_id,
            job_id=job_id,
            job_timeout=settings.timeout_s,
            result_ttl=settings.ttl_s,
            failure_ttl=settings.ttl_s,
            ttl=settings.ttl_s,
            retry=Retry(max=settings.retries) if settings.retries else None,
            meta={
                "owner": owner,
                "kind": kind,
                "progress": {"done": 0, "total": total},
                "enqueued": time.time(),
            },
            description=f"{kind} job {job_id}",
        )

    def fetch(self, job_id: str, owner: str) -> Any | None:
        """The job, or None if there is none with this id that ``owner`` may see."""
        from rq.exceptions import NoSuchJobError
        from rq.job import Job

        def load() -> Any | None:
            try:
                return Job.fetch(job_id, connection=self.redis)
            except NoSuchJobError:
                return None

        job = self.call(load)
        if job is None or not hmac.compare_digest(str(job.meta.get("owner", "")), owner):
            return None
        return job

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.call(self.redis.exists, cancel_key(self.settings.prefix, job_id)))  # type: ignore[union-attr]

    def cancel(self, job: Any) -> str:
        """Ask the job to stop: a queued job leaves the queue now, a running one stops at its
        next progress step (the worker reads the cancel key). The status after the call."""
        key = cancel_key(self.settings.prefix, job.id)
        self.call(self.redis.set, key, 1, ex=self.settings.ttl_s)  # type: ignore[union-attr]
        state = self.public_status(job)
        if state == "queued":
            from rq.exceptions import InvalidJobOperation

            with contextlib.suppress(InvalidJobOperation):  # taken meanwhile: it reads the key
                self.call(job.cancel)
        return self.public_status(job)

    def public_status(self, job: Any) -> str:
        status = self.call(job.get_status, refresh=True)
        value = getattr(status, "value", status) or "queued"
        mapped = RQ_STATUS.get(str(value), "failed")
        if mapped == "failed" and job.meta.get("failure", {}).get("reason") == "canceled":
            return "canceled"
        return mapped

    def describe(self, job: Any) -> dict[str, Any]:
        """The body of GET /jobs/<id> (without the URLs, which are the web's)."""
        status = self.public_status(job)
        self.call(job.refresh)
        meta = job.meta
        failure = meta.get("failure") or {}
        progress = meta.get("progress") or {"done": 0, "total": None}
        body: dict[str, Any] = {
            "id": job.id,
            "kind": meta.get("kind"),
            "status": status,
            "progress": {"done": progress.get("done", 0), "total": progress.get("total")},
            "eta_s": meta.get("eta_s") if status in ("queued", "started") else None,
            "error": failure.get("message") if status in ("failed", "canceled") else None,
            "attempts": meta.get("attempts", 0),
        }
        if status == "canceled" and not body["error"]:
            body["error"] = "canceled by its owner"
        if status == "started" and self.cancel_requested(job.id):
            body["cancel_requested"] = True
        if meta.get("summary"):
            body["summary"] = meta["summary"]
        return body
