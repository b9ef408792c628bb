"""Load for the overload, stop and reload tests and devtools/overload_drill.py, each outcome sorted.

One plain HTTP/1.1 connection per request (like nginx to Gunicorn), so every failure is
attributed exactly:
- ``refused``: connect() failed with ECONNREFUSED. No socket was listening: the request never
  reached the service, and the client knows it can retry elsewhere.
- ``reset``: the connection was accepted by the kernel (it reached the listen queue or a
  worker) and then closed or reset without an answer. This is a lost request.
- ``timeout``: no answer within the client's timeout (a hang).
- otherwise the HTTP status, with the latency, Retry-After and JSON error code.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np


@dataclass(frozen=True)
class Outcome:
    kind: str  # "http", "refused", "reset", "timeout"
    status: int  # 0 unless kind == "http"
    seconds: float
    started: float  # time.monotonic() at the start
    retry_after: str | None = None
    code: str | None = None  # the JSON error code of an error answer
    body: bytes = b""
    server_timing: str = ""

    def stage_ms(self, name: str) -> float | None:
        """One entry of the Server-Timing header, in ms."""
        match = re.search(rf"(?:^|, ){name};dur=([\d.]+)", self.server_timing)
        return float(match.group(1)) if match else None


def post_once(url: str, body: bytes, timeout: float = 30.0, keep_body: bool = False) -> Outcome:
    """POST ``body`` as image/jpeg to ``url`` (…/predict) on a fresh connection."""
    parts = urlsplit(url)
    started = time.monotonic()

    def outcome(kind: str, status: int = 0, **extra: object) -> Outcome:
        return Outcome(kind, status, time.monotonic() - started, started, **extra)  # type: ignore[arg-type]

    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        try:
            connection.connect()
        except ConnectionRefusedError:
            return outcome("refused")
        connection.request("POST", parts.path, body, {"Content-Type": "image/jpeg"})
        response = connection.getresponse()
        data = response.read()
        code = None
        if response.status >= 400:
            try:
                code = json.loads(data)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = "not-json"
        return outcome(
            "http",
            response.status,
            retry_after=response.getheader("Retry-After"),
            code=code,
            body=data if keep_body else b"",
            server_timing=response.getheader("Server-Timing") or "",
        )
    except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
        return outcome("reset")
    except TimeoutError:
        return outcome("timeout")
    finally:
        connection.close()


def burst(
    url: str,
    body: bytes,
    concurrency: int,
    per_client: int,
    timeout: float = 30.0,
    keep_body: bool = False,
) -> list[Outcome]:
    """``concurrency`` clients each send ``per_client`` requests back to back (no retry waits)."""
    results: list[Outcome] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(per_client):
            result = post_once(url, body, timeout, keep_body)
            with lock:
                results.append(result)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


class SteadyLoad:
    """``concurrency`` clients posting back to back until stopped, or until refused (gone)."""

    def __init__(self, url: str, body: bytes, concurrency: int, timeout: float = 30.0) -> None:
        self.results: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(url, body, timeout))
            for _ in range(concurrency)
        ]

    def _client(self, url: str, body: bytes, timeout: float) -> None:
        while not self._stop.is_set():
            result = post_once(url, body, timeout)
            with self._lock:
                self.results.append(result)
            if result.kind == "refused":
                return  # the service has closed its socket: nothing more to send there

    def __enter__(self) -> SteadyLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def wait_for_answers(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.count(lambda r: r.kind == "http") < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} answers within {timeout} s")
            time.sleep(0.05)

    def count(self, predicate: Callable[[Outcome], bool]) -> int:
        with self._lock:
            return sum(1 for r in self.results if predicate(r))

    def wait_until_done(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)


def summary(results: list[Outcome]) -> dict[str, object]:
    """Counts by outcome ("200", "503 overloaded", "reset", ...), p50/p99 ms of 200s and 503s."""
    counts: dict[str, int] = {}
    for r in results:
        key = r.kind if r.kind != "http" else f"{r.status} {r.code}" if r.code else str(r.status)
        counts[key] = counts.get(key, 0) + 1
    report: dict[str, object] = {"answers": dict(sorted(counts.items())), "total": len(results)}
    for status in (200, 503):
        seconds = [r.seconds for r in results if r.kind == "http" and r.status == status]
        if seconds:
            report[f"p50_ms_{status}"] = round(float(np.percentile(seconds, 50)) * 1000, 1)
            report[f"p99_ms_{status}"] = round(float(np.percentile(seconds, 99)) * 1000, 1)
            report[f"max_ms_{status}"] = round(max(seconds) * 1000, 1)
    queue = [r.stage_ms("queue") for r in results if r.status == 200]
    if queue and None not in queue:  # the worker's own measure of the wait for a turn
        report["queue_p99_ms_200"] = round(float(np.percentile(queue, 99)), 1)
        report["queue_max_ms_200"] = round(max(queue), 1)
    return report
