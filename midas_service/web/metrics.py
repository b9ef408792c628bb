"""Prometheus metrics; multiprocess mode under Gunicorn so /metrics sums every worker.

Multiprocess mode is on when PROMETHEUS_MULTIPROC_DIR is set (``Settings.metrics_dir``;
gunicorn.conf.py sets and cleans it); without it (tests, `flask run`) the process registry
is used.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = Counter(
    "midas_requests", "HTTP requests answered", ["endpoint", "method", "status", "output"]
)
REQUEST_SECONDS = Histogram(
    "midas_request_seconds", "Whole request latency", ["endpoint"], buckets=LATENCY_BUCKETS
)
STAGE_SECONDS = Histogram(
    "midas_stage_seconds",
    "Latency of each /predict stage (queue, decode, preprocess, infer, postprocess, encode)",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
INFERENCE_THREADS = Counter(
    "midas_inferences",
    "Inferences by thread count: all threads alone, fewer while other workers compute",
    ["threads"],
)
CACHE = Counter(
    "midas_cache", "Result cache lookups: hit, miss, or error (store unreachable)", ["result"]
)
IN_FLIGHT = Gauge(
    "midas_in_flight_requests", "Requests being handled now", multiprocess_mode="livesum"
)


def render(multiprocess_dir: Path | None, extra: Iterable[Collector] = ()) -> tuple[bytes, str]:
    """The exposition text of every worker (multiprocess) or of this process, then that of
    ``extra`` collectors (read at scrape time, e.g. the job queue's in Redis)."""
    if multiprocess_dir is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(multiprocess_dir))
        body = generate_latest(registry)
    else:
        from prometheus_client import REGISTRY

        body = generate_latest(REGISTRY)
    collectors = list(extra)
    if collectors:
        registry = CollectorRegistry(auto_describe=False)
        for collector in collectors:
            registry.register(collector)
        body += generate_latest(registry)
    return body, CONTENT_TYPE_LATEST
