"""Gunicorn settings for the depth service, read through midas_service.config like every other
setting (GUNICORN_* and MIDAS_* variables; docs/configuration.md lists them).

Prefork workers (threaded, one request computing at a time; see "Lifecycle" at the end): each
worker imports app.py after the fork, loads the model once on a background thread and runs
MIDAS_WARMUP_RUNS inferences before its /readyz turns 200; a request that reaches a worker
still warming up waits for it (MIDAS_READY_WAIT_S).

Layout: one worker per usable core, and each worker may use every core (MIDAS_THREADS =
cores), so a lone request gets all cores (low latency at c=1). That only works if idle threads
sleep instead of spinning, or two workers' spinning threads starve each other on shared cores:
- TorchScript (the default): Intel OpenMP preloaded with KMP_BLOCKTIME=1
  (inference/openmp.py; serve.sh, the image's ENV and devtools/servers.py set it). Without
  the preload this file falls back to OMP_WAIT_POLICY=PASSIVE (same throughput, a lone
  request ~30 % slower) and says so in the log.
- ONNX Runtime: MIDAS_ORT_SPINNING=0.
- OpenVINO: its own (TBB) thread pool per compiled model; OpenMP settings do not apply.
While other workers compute, a request runs on its share of the cores instead of every core,
or waits for the workers' one inference turn (MIDAS_SHARE_CORES,
midas_service/inference/core_share.py; the master gives each worker a slot in pre_fork and
clears it in child_exit).
The measurements behind this are in docs/performance.md, from devtools/bench.py.

The master never loads a model runtime, so forking stays cheap and a worker's runtime starts
clean. The master imports exactly these project modules (tests/test_layout.py checks the list):
midas_service, midas_service.config, midas_service.logs, midas_service.images,
midas_service.images.colormap_names, midas_service.inference, midas_service.inference.core_share,
midas_service.inference.openmp, midas_service.inference.precision,
midas_service.inference.engines, midas_service.serving, midas_service.serving.lifecycle, plus
the configured backend's module in midas_service.inference.engines.<backend> (its read_metadata
checks the model file; openvino's reuses engines.onnxruntime's ONNX header check); of
third-party packages only gunicorn and prometheus_client (child_exit). No torch, onnxruntime,
openvino, cv2, numpy, Pillow or Flask: the workers import those after the fork.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from midas_service.config import ServerSettings, Settings
from midas_service.inference import core_share, openmp
from midas_service.inference.engines import available_cpus
from midas_service.logs import LOG_FORMAT
from midas_service.serving import lifecycle

_cpus = available_cpus()
# prometheus-client multiprocess mode: every worker writes here, /metrics sums them. The
# library reads the variable itself, in the workers, so it is set before the settings are read.
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), "midas-prometheus")
)
# A bad MIDAS_* or GUNICORN_* value stops the start here, before any fork.
_service = Settings.from_env()
_server = ServerSettings.from_env()
_metrics_dir = str(_service.metrics_dir)

bind = _server.bind
workers = _server.workers or _cpus
worker_class = "midas_service.serving.worker.MidasWorker"  # gthread; see "Lifecycle" below
preload_app = False  # the model must load in each worker, after fork, never in the master
timeout = _server.timeout
graceful_timeout = _server.graceful_timeout
backlog = 256
control_socket_disable = True  # unused; one fixed path would collide between instances
limit_request_line = 8190

# Intra-op threads per worker: every usable core (see the docstring), for either backend
# (MIDAS_THREADS unset: the runtime takes the usable cores).
_threads = _service.threads or _cpus
# Workers import torch after the fork, so this still reaches their GNU OpenMP.
_openmp_fallback = _service.backend == "torchscript" and not openmp.intel_preloaded()
if _openmp_fallback:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

accesslog = _server.accesslog
# Query values other than output/format/colormap are logged as REDACTED (a key sent in the URL).
logger_class = "midas_service.serving.access_log.ScrubbingLogger"
errorlog = "-"
loglevel = _service.log_level
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
        "layout: %d workers x %s threads on %d usable cores, backend %s",
        workers,
        _threads,
        _cpus,
        _service.backend,
    )
    if _openmp_fallback:
        server.log.warning(
            "Intel OpenMP is not preloaded: TorchScript falls back to OMP_WAIT_POLICY=PASSIVE "
            "(a lone request ~30%% slower). Start with scripts/serve.sh, or run "
            "'eval \"$(python -m midas_service.inference.openmp)\"' before gunicorn."
        )


def pre_fork(server, worker) -> None:
    """The worker inherits a slot for telling the others when it computes (core_share.py)."""
    core_share.assign_slot(worker.age)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    core_share.release_slot(worker.age)


# --- Lifecycle: overload, stop, reload, fail-fast start (serving/lifecycle.py, worker.py) ---
# Each worker computes one request at a time (the compute turn) with MIDAS_THREADS inference
# threads; its request threads read uploads, answer probes and refuse what cannot start within
# MIDAS_QUEUE_TIMEOUT_S: one computing, MIDAS_MAX_WAITING waiting, two to spare for the rest.
threads = _server.threads or _service.max_waiting + 3
# Close after each answer: nginx does not keep upstream connections,
# and a kept-alive connection could be closed under a client's next request on stop.
keepalive = 0


def when_ready(server) -> None:
    """Before forking: exit 3 unless the model is servable; drain on SIGTERM; check on SIGHUP."""
    lifecycle.take_over(server, _service)
