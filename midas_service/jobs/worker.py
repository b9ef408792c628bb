"""``python -m midas_service worker``: load the model once, then run jobs from the RQ queue.

Failure handling, on top of RQ 2.12:

- The worker is an RQ ``SimpleWorker`` (jobs run in this process, on the model loaded once;
  a fork per job would copy a model whose OpenMP threads do not survive ``fork``).
- While a job runs, a thread renews its entry in RQ's StartedJobRegistry every
  ``MIDAS_JOBS_HEARTBEAT_S`` for ``MIDAS_JOBS_TAKEOVER_S``. A worker that is SIGKILLed (or
  loses its machine) stops renewing; every live worker runs RQ's registry cleanup each
  heartbeat period (under a short Redis lock), which moves the job back to the queue while it
  has retries left (``MIDAS_JOBS_RETRIES``), else fails it with reason ``abandoned``. So a dead
  worker's job is "started" at most ``MIDAS_JOBS_TAKEOVER_S + 2 * MIDAS_JOBS_HEARTBEAT_S``.
- SIGTERM (RQ's warm shutdown): the current job finishes, then the worker exits. A second
  SIGTERM (cold shutdown) stops it at once and the job goes back to the queue (reason
  ``shutdown``, counted against its retries).
- Failures that a re-run cannot fix (bad input, timeout, cancel, a fault) are never retried.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from typing import Any

from midas_service.answer import InputLimits
from midas_service.config import JobSettings, Settings
from midas_service.jobs import stats, tasks
from midas_service.jobs.store import JobStore
from midas_service.loading import load_model

log = logging.getLogger(__name__)

RETRYABLE = ("abandoned", "shutdown")
SWEEP_EVERY_S = 5.0  # how often each worker removes expired job folders
WORKER_TTL_S = 30  # RQ worker key lifetime; RQ blocks on the queue for this minus 15 s


def failure_reason(exc_type: type[BaseException]) -> str:
    from rq.exceptions import AbandonedJobError
    from rq.timeouts import JobTimeoutException

    if issubclass(exc_type, tasks.JobCanceled):
        return "canceled"
    if issubclass(exc_type, JobTimeoutException):
        return "timeout"
    if issubclass(exc_type, AbandonedJobError):
        return "abandoned"
    if issubclass(exc_type, (SystemExit, KeyboardInterrupt)) or exc_type.__name__ == (
        "ShutDownImminentException"
    ):
        return "shutdown"
    if issubclass(exc_type, tasks.JobInputError):
        return "bad_input"
    return "internal"


def failure_message(reason: str, exc: BaseException | None, settings: JobSettings) -> str:
    if reason in ("bad_input", "canceled") and exc is not None:
        return str(exc)
    return {
        "timeout": f"the job ran longer than MIDAS_JOBS_TIMEOUT_S ({settings.timeout_s} s)",
        "abandoned": "the worker running this job stopped (killed or lost) and the job had no "
        "retries left",
        "shutdown": "the worker running this job was stopped and the job had no retries left",
        "internal": "internal error in the worker; see its log",
    }.get(reason, str(exc))


def make_exception_handler(settings: JobSettings, redis: Any):
    """RQ exception handler: name the reason, stop retries a re-run cannot fix, count it."""

    def handle(job: Any, exc_type: type[BaseException], exc: BaseException | None, tb: Any) -> bool:
        reason = failure_reason(exc_type)
        retried = reason in RETRYABLE and bool(job.retries_left)
        if not retried:
            job.retries_left = 0  # RQ reads this right after the handlers
        if reason == "internal":
            log.error("job %s failed", job.id, exc_info=(exc_type, exc, tb) if exc else None)
        else:
            log.warning("job %s: %s%s", job.id, reason, " (back to the queue)" if retried else "")
        if not retried:  # a dead worker's partial files (a re-run removes them itself)
            try:
                store = JobStore(settings.directory, settings.max_store_bytes, settings.ttl_s)
                store.remove_partial(str(job.args[0]) if job.args else job.id)
            except Exception:
                log.exception("could not clean the folder of job %s", job.id)
        try:
            job.meta["failure"] = {
                "reason": reason,
                "message": failure_message(reason, exc, settings),
                "retried": retried,
            }
            job.save_meta()
            stats.record_failure(redis, settings.prefix, reason, retried)
        except Exception:  # the failure itself must still be recorded by RQ
            log.exception("could not record the failure of job %s", job.id)
        return True

    return handle


def build_worker(settings: JobSettings, redis: Any, handler: Any, name: str | None) -> Any:
    from rq import Queue, SimpleWorker

    class JobWorker(SimpleWorker):
        def get_heartbeat_ttl(self, job: Any) -> int:
            return settings.takeover_s

    queue = Queue(settings.queue, connection=redis)
    return JobWorker(
        [queue],
        connection=redis,
        name=name,
        worker_ttl=WORKER_TTL_S,
        exception_handlers=[handler],
        disable_default_exception_handler=False,
        maintenance_interval=int(max(1, settings.heartbeat_s)),
    )


class Keeper(threading.Thread):
    """Beside the worker: renews the running job's heartbeat, takes over dead workers' jobs
    (RQ's registry cleanup), and removes expired job folders."""

    def __init__(self, worker: Any, settings: JobSettings, store: JobStore, handler: Any) -> None:
        super().__init__(name="jobs-keeper", daemon=True)
        self.worker, self.settings, self.store, self.handler = worker, settings, store, handler
        self.stopping = threading.Event()
        self.swept = -SWEEP_EVERY_S

    def run(self) -> None:
        while not self.stopping.wait(self.settings.heartbeat_s):
            try:
                self.beat()
                self.maintain()
            except Exception as exc:  # Redis away: RQ's own loop waits for it to return
                log.warning("job heartbeat/maintenance failed: %s", exc)

    def beat(self) -> None:
        from rq.utils import now

        worker = self.worker
        job = worker.get_current_job()
        execution = getattr(worker, "execution", None)
        if job is None or execution is None:
            return
        ttl = self.settings.takeover_s
        with worker.connection.pipeline() as pipe:
            worker.heartbeat(WORKER_TTL_S + 60, pipeline=pipe)
            execution.heartbeat(job.started_job_registry, ttl, pipeline=pipe)
            job.heartbeat(now(), ttl, pipeline=pipe, xx=True)
            pipe.execute()

    def maintain(self) -> None:
        from rq.registry import StartedJobRegistry

        redis = self.worker.connection
        # A short lock per queue: one worker of that queue at a time (workers of other queues
        # sharing the Redis must not keep it from its own), and a worker killed holding it
        # delays no one long.
        for queue in self.worker.queues:
            lock = f"{self.settings.prefix}jobs:maintenance:{queue.name}"
            if redis.set(
                lock, self.worker.name, nx=True, ex=max(1, int(self.settings.heartbeat_s))
            ):
                StartedJobRegistry(queue=queue).cleanup(exception_handlers=[self.handler])
        if time.monotonic() - self.swept >= SWEEP_EVERY_S:  # a scan of the store's folders
            self.store.sweep()
            self.swept = time.monotonic()


def add_parser(commands: argparse._SubParsersAction) -> None:
    worker = commands.add_parser(
        "worker",
        help="run jobs (videos, zips of photos) from the Redis queue",
        description=(
            "Load the model once with the service's settings (MIDAS_MODEL_PATH, MIDAS_BACKEND, "
            "MIDAS_THREADS, ...) and run the jobs that POST /jobs puts on the queue at REDIS_URL; "
            "inputs and outputs are read from and written to MIDAS_JOBS_DIR. SIGTERM: finish the "
            "current job, then exit; a second SIGTERM: stop now, the job goes back to the queue."
        ),
    )
    worker.add_argument("--name", help="worker name (default: RQ's, host and pid)")
    worker.add_argument(
        "--burst", action="store_true", help="exit when the queue is empty (tests, batch runs)"
    )


def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    from redis import Redis

    from midas_service.logs import configure_logging

    configure_logging(settings.log_level)
    jobs = settings.jobs
    if not jobs.redis_url:
        log.error("the worker needs REDIS_URL (the queue's Redis)")
        return 2
    try:
        estimator = load_model(settings).estimator
    except Exception as exc:
        log.error("model failed to load: %s", exc)
        return 2
    store = JobStore(jobs.directory, jobs.max_store_bytes, jobs.ttl_s)
    store.ensure()
    redis = Redis.from_url(jobs.redis_url, socket_connect_timeout=5, health_check_interval=10)
    limits = InputLimits(settings.max_upload_bytes, settings.max_pixels)
    tasks.configure(tasks.Context(jobs, store, estimator, limits, redis, settings.video))
    handler = make_exception_handler(jobs, redis)
    worker = build_worker(jobs, redis, handler, args.name)
    keeper = Keeper(worker, jobs, store, handler)
    keeper.start()
    log.info(
        "worker %s ready on queue %s (%s %s, %s threads); a dead worker's job is taken over "
        "within %.0f s",
        worker.name,
        jobs.queue,
        settings.backend,
        settings.precision,
        estimator.engine.threads,
        jobs.takeover_bound_s,
    )
    started = time.monotonic()
    try:
        worker.work(
            burst=args.burst, logging_level=settings.log_level.upper(), with_scheduler=False
        )
    finally:
        keeper.stopping.set()
    log.info("worker %s stopped after %.0f s", worker.name, time.monotonic() - started)
    return 0
