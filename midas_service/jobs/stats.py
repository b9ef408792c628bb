"""Job counters kept in Redis, so that the web's /metrics reports what every worker did.

Workers are separate processes, often on other machines; each adds to one Redis hash and the
web app turns it into Prometheus metrics at scrape time, beside the queue's length.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


def stats_key(prefix: str) -> str:
    return f"{prefix}jobs:stats"


def record_finished(redis: Any, prefix: str, kind: str, seconds: float) -> None:
    """One finished job of ``kind`` (photos, video) that ran ``seconds``."""
    bucket = next((str(b) for b in DURATION_BUCKETS if seconds <= b), "+Inf")
    with redis.pipeline() as pipe:
        pipe.hincrby(stats_key(prefix), f"finished:{kind}", 1)
        pipe.hincrby(stats_key(prefix), f"bucket:{kind}:{bucket}", 1)
        pipe.hincrbyfloat(stats_key(prefix), f"seconds:{kind}", seconds)
        pipe.execute()


def record_failure(redis: Any, prefix: str, reason: str, retried: bool) -> None:
    field = f"{'retried' if retried else 'failed'}:{reason}"
    redis.hincrby(stats_key(prefix), field, 1)


def _decode(raw: dict[Any, Any]) -> dict[str, float]:
    return {
        (k.decode() if isinstance(k, bytes) else k): float(
            v.decode() if isinstance(v, bytes) else v
        )
        for k, v in raw.items()
    }


class JobsCollector(Collector):
    """Queue length (by state), job durations and failures by reason, read from Redis."""

    def __init__(self, queue_source: Any, redis: Any, prefix: str) -> None:
        self.queue_source = queue_source  # callable -> rq.Queue
        self.redis = redis
        self.prefix = prefix

    def collect(self) -> Iterator[Any]:
        from redis.exceptions import RedisError

        up = GaugeMetricFamily("midas_jobs_redis_up", "1 when the job queue's Redis answered")
        try:
            queue = self.queue_source()
            lengths = {
                "queued": queue.count,
                "started": queue.started_job_registry.count,
                "failed": queue.failed_job_registry.count,
            }
            stats = _decode(self.redis.hgetall(stats_key(self.prefix)))
        except (RedisError, OSError) as exc:
            log.warning("job metrics unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        queued = GaugeMetricFamily(
            "midas_jobs_queue_length", "Jobs waiting, running, or failed (kept)", labels=["state"]
        )
        for state, count in lengths.items():
            queued.add_metric([state], count)
        yield queued
        failures = CounterMetricFamily(
            "midas_job_failures",
            "Job runs that failed, by reason; retried=yes went back to the queue",
            labels=["reason", "retried"],
        )
        for field, value in stats.items():
            kind, _, reason = field.partition(":")
            if kind in ("failed", "retried"):
                failures.add_metric([reason, "yes" if kind == "retried" else "no"], value)
        yield failures
        durations = HistogramMetricFamily(
            "midas_job_seconds", "Run time of finished jobs", labels=["kind"]
        )
        for kind in sorted({f.split(":")[1] for f in stats if f.startswith("finished:")}):
            cumulative, buckets = 0.0, []
            for bound in (*DURATION_BUCKETS, "+Inf"):
                cumulative += stats.get(f"bucket:{kind}:{bound}", 0.0)
                buckets.append((str(bound), cumulative))
            durations.add_metric([kind], buckets, stats.get(f"seconds:{kind}", 0.0))
        yield durations
