"""The service's life under Gunicorn: start only with a servable model, drain on stop, safe reload.

Used by gunicorn.conf.py's ``when_ready`` hook in the master (no torch there) and by the workers:

- **Start.** The master checks the model file before forking any worker: missing, not a
  TorchScript archive, truncated (a CRC or the central directory fails), without the export
  metadata, or untrained without MIDAS_RANDOM_WEIGHTS=1 is one error line and exit code 3;
  so is a MIDAS_PRECISION the backend does not offer, or bf16 on a CPU without bf16 units.
  Whatever only loading can reveal makes the worker say so and ask the master to halt with
  Gunicorn's boot-error code 3. (Workers exiting with code 3 themselves would do the same,
  but when two do at once Gunicorn 27 meets the second exit while halting and crashes with
  exit code 1.)
- **Stop (SIGTERM).** /readyz answers 503 at once, the workers keep serving for MIDAS_DRAIN_S so
  load balancers that poll readiness move away, then Gunicorn's graceful stop runs. Each
  worker then serves every connection that already reached the listen queue before it closes
  the socket, so later connects are refused, never reset (``midas_service.serving.worker``).
- **Reload (SIGHUP).** Gunicorn keeps the listening socket and starts new workers before it
  stops the old ones; the master first checks the new model file and refuses a bad one
  (the current workers keep serving).
"""

from __future__ import annotations

import logging
import mmap
import os
import signal
import sys
import threading
from typing import Any

from midas_service.config import Settings
from midas_service.inference.engines import (
    REGISTRY,
    ModelFileError,
    model_file,
    refuse_untrained,
)
from midas_service.inference.precision import PrecisionRefused, check_precision

log = logging.getLogger(__name__)

# Anonymous shared memory, made when the master imports this module (from gunicorn.conf.py)
# and inherited by every worker it forks: byte 0 = draining (set by the master for all
# workers), byte 1 = a worker's model failed to load (set by that worker for the master).
_SHARED = mmap.mmap(-1, 2)
DRAINING, BOOT_FAILED = 0, 1
# The Gunicorn worker's logger once this process serves as a MidasWorker (enter_worker).
_worker_log: logging.Logger | None = None


def draining() -> bool:
    return _SHARED[DRAINING] == 1


def begin_drain() -> None:
    _SHARED[DRAINING] = 1


def report_boot_failure() -> None:
    """From a worker whose model cannot load: the master halts with exit code 3."""
    _SHARED[BOOT_FAILED] = 1
    os.kill(os.getppid(), signal.SIGTERM)


def enter_worker(worker_log: logging.Logger) -> None:
    """From MidasWorker.init_process: a model that fails to load here stops the service."""
    global _worker_log
    _worker_log = worker_log


def model_failed(message: str) -> None:
    """Called by the runtime. In a Gunicorn worker the master then halts with exit code 3;
    elsewhere (tests, ``flask run``) nothing happens: /healthz and the 503s say it."""
    if _worker_log is not None:
        _worker_log.error("stopping the service: %s", message)
        report_boot_failure()


def check_model_file(settings: Settings) -> None:
    """Raise ``ModelFileError`` unless the backend's model file looks servable (no torch import),
    ``PrecisionRefused`` unless the backend serves MIDAS_PRECISION fast on this CPU."""
    check_precision(settings.backend, settings.precision)
    path = model_file(settings.model_path, settings.backend)
    if not path.is_file():
        raise ModelFileError(f"model file {path} not found; create it with midas-depth export")
    metadata = REGISTRY[settings.backend].read_metadata(path)
    refuse_untrained(path, metadata, settings.allow_untrained)


def take_over(server: Any, settings: Settings) -> None:
    """``when_ready`` hook: check the model (or exit 3), then wrap the master's SIGTERM and SIGHUP.

    Gunicorn's arbiter dispatches a signal to ``self.handle_<name>``, looked up when the
    signal arrives, so instance attributes replace those two handlers.
    """
    try:
        check_model_file(settings)
    except (ModelFileError, PrecisionRefused) as exc:
        server.log.error("cannot start: %s", exc)
        sys.exit(server.WORKER_BOOT_ERROR)
    stop, reload = server.handle_term, server.handle_hup

    def handle_term() -> None:
        if _SHARED[BOOT_FAILED]:
            from gunicorn.errors import HaltServer

            raise HaltServer("a worker's model failed to load", server.WORKER_BOOT_ERROR)
        if settings.drain_s <= 0 or draining():
            stop()  # no drain, or the second SIGTERM: Gunicorn's graceful stop
            return
        begin_drain()
        server.log.info(
            "SIGTERM: /readyz now answers 503; serving on for %g s (MIDAS_DRAIN_S), then stopping",
            settings.drain_s,
        )
        timer = threading.Timer(settings.drain_s, os.kill, (os.getpid(), signal.SIGTERM))
        timer.daemon = True
        timer.start()

    def handle_hup() -> None:
        try:
            check_model_file(settings)
        except (ModelFileError, PrecisionRefused) as exc:
            server.log.error("reload refused, the current workers keep serving: %s", exc)
            return
        reload()

    server.handle_term = handle_term
    server.handle_hup = handle_hup
