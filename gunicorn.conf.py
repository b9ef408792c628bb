"""Gunicorn settings for the depth service (override any of them with GUNICORN_* variables).

Prefork sync workers: each worker imports app.py after the fork, loads the model once on a
background thread and runs MIDAS_WARMUP_RUNS inferences before its /readyz turns 200; a
request that reaches a worker still warming up waits for it (MIDAS_READY_WAIT_S).

Layout: one worker per usable core, and with ONNX Runtime each worker may use every core
(MIDAS_THREADS = cores) because its idle threads sleep (MIDAS_ORT_SPINNING=0). A lone request
then gets all cores (low latency at c=1) and concurrent requests share them without spinning
threads starving each other (throughput at c>=2). scripts/bench.py, 2 cores, one run
(640x480 JPEG -> heatmap; ORT model alone 23.7 ms at 256x192, 2 threads):

    workers x threads     c=1 p50   req/s c=1   c=2    c=4    c=8   p99 c=4
    1 x 2                 26.5 ms   39.0        39.4   39.9   40.6  108 ms
    2 x 1                 39.5 ms   25.6        49.1   49.7   48.3   89 ms
    2 x 2 (chosen)        25.9 ms   39.9        45.8   45.5   43.7  135 ms
    2 x 2, ORT spinning   43.5 ms   23.5        28.5   27.8   25.3  167 ms
    2 x 2, TorchScript    26.2 ms   35.5        14.1   21.1   14.0  542 ms

2x2 is the only layout that meets both targets (c=1 p50 <= 1.5x the model time, c=4 >= 0.8x of
1/model time). TorchScript's OpenMP threads do oversubscribe, so with MIDAS_BACKEND=torchscript
the default is cores / workers threads per worker instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from midas_service.engine import DEFAULT_BACKEND, available_cpus
from midas_service.logs import LOG_FORMAT

_cpus = available_cpus()

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", str(_cpus)))
worker_class = "sync"  # one request per worker at a time: inference is CPU-bound
preload_app = False  # the model must load in each worker, after fork, never in the master
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
backlog = 256
control_socket_disable = True  # unused; one fixed path would collide between instances
limit_request_line = 8190

# Intra-op threads per worker (see the layout table above).
_backend = os.environ.get("MIDAS_BACKEND", DEFAULT_BACKEND)
os.environ.setdefault(
    "MIDAS_THREADS", str(_cpus if _backend == "onnxruntime" else max(1, _cpus // workers))
)

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
