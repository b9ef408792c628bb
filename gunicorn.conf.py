"""Gunicorn settings for the depth service (override any of them with GUNICORN_* variables).

Prefork sync workers: each worker imports app.py after the fork, loads the model once on a
background thread and runs MIDAS_WARMUP_RUNS inferences before /readyz turns 200.

Layout (workers x intra-op threads), measured with scripts/bench.py on 2 cores, see README
"Performance": the default is one worker per usable core with 1 thread each... see
LAYOUT_NOTE below for the table that chose it.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from midas_service.engine import available_cpus
from midas_service.logs import LOG_FORMAT

_cpus = available_cpus()

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", str(_cpus)))
worker_class = "sync"  # one request per worker at a time: inference is CPU-bound
preload_app = False  # the model must load in each worker, after fork, never in the master
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
backlog = 256
limit_request_line = 8190

# Intra-op threads per worker so that workers x threads does not oversubscribe the cores.
os.environ.setdefault("MIDAS_THREADS", str(max(1, _cpus // workers)))

# prometheus-client multiprocess mode: every worker writes here, /metrics sums them.
_metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), "midas-prometheus")
)

accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
errorlog = "-"
loglevel = os.environ.get("MIDAS_LOG_LEVEL", "info")
access_log_format = (
    'ts=%(t)s remote=%(h)s method=%(m)s path="%(U)s" query="%(q)s" status=%(s)s '
    "bytes=%(B)s duration_ms=%(M)s request_id=%({x-request-id}o)s"
)
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "kv": {"format": LOG_FORMAT.replace(" request_id=%(request_id)s", "")},
        "access": {"format": "%(message)s"},  # the access line carries its own ts=
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "kv"},
        "access": {"class": "logging.StreamHandler", "formatter": "access"},
    },
    # The app adds its own root handler (with request ids) in each worker.
    "root": {"level": loglevel.upper(), "handlers": []},
    "loggers": {
        "gunicorn.error": {"handlers": ["console"], "level": loglevel.upper(), "propagate": False},
        "gunicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}


def on_starting(server) -> None:
    """Start every run with an empty metrics directory (stale files would be summed)."""
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    os.makedirs(_metrics_dir, exist_ok=True)
    server.log.info(
        "layout: %d workers x %s threads on %d usable cores",
        workers,
        os.environ["MIDAS_THREADS"],
        _cpus,
    )


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
