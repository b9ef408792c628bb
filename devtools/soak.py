"""Soak the depth service: concurrency 16 for a set time with good, repeated and hostile requests.

    python -m devtools.soak                          # 5 minutes through nginx (started here)
    python -m devtools.soak --duration 60            # shorter
    python -m devtools.soak --url http://127.0.0.1:8080 --master-pid PID   # a running service

Without --url it exports a random-weights model, starts Gunicorn (gunicorn.conf.py) and nginx
on free loopback ports as the tests do, and stops them at the end. Loopback only.

First the cache effect: N requests that miss (a new image each) and N that hit (one image
again), one at a time. Then the soak. The mix: new photos (cache misses), a few photos over
and over (hits), and hostile requests (undecodable, wrong type, oversize, bad parameters).
Reported: requests, answers by status class, wrong answers (a good request not answered 200,
a hostile one not 4xx), unexplained 5xx (only a 503 shed with Retry-After is explained),
connection resets, p50/p99 per kind, and RSS of every Gunicorn worker (children of the
master, from /proc) at the end of the warm-up and at the end. Exit status 1 if a target is
missed: 0 unexplained 5xx, 0 resets, RSS growth < 10 % per worker.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import requests

from devtools.servers import gunicorn, nginx, worker_pids
from devtools.support import export_model, photo_640x480_jpeg

ROOT = Path(__file__).resolve().parent.parent

log = logging.getLogger("soak")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
RSS_GROWTH_TARGET = 0.10
SHED_EXCLUDED_CODES = {"unavailable", "not_ready", "internal_error"}  # 503s that are not a shed


def unique_jpeg(jpeg: bytes, nonce: int) -> bytes:
    """The same picture with a JPEG comment segment after SOI: new bytes, so a cache miss."""
    comment = f"soak {nonce}".encode()
    return jpeg[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + jpeg[2:]


@dataclass(frozen=True)
class Call:
    kind: str  # good, cached, hostile
    name: str
    query: str
    body: bytes
    content_type: str


def hostile_calls(jpeg: bytes, max_upload_mb: float) -> list[Call]:
    rng = np.random.default_rng(7)
    oversize = bytes(int((max_upload_mb + 1) * 1024 * 1024))
    return [
        Call("hostile", "undecodable", "", b"\xff\xd8\xff" + rng.bytes(20_000), "image/jpeg"),
        Call("hostile", "truncated", "", jpeg[: len(jpeg) // 3], "image/jpeg"),
        Call("hostile", "wrong_type", "", b"%PDF-1.7\n" + rng.bytes(5_000), "image/jpeg"),
        Call("hostile", "text_body", "", b"hello, this is not a photo", "text/plain"),
        Call("hostile", "bad_output", "?output=mesh", jpeg, "image/jpeg"),
        Call("hostile", "bad_colormap", "?colormap=rainbow", jpeg, "image/jpeg"),
        Call("hostile", "oversize", "", oversize, "image/jpeg"),
    ]


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter = field(default_factory=Counter)
    classes: Counter = field(default_factory=Counter)
    wrong: Counter = field(default_factory=Counter)
    unexplained_5xx: Counter = field(default_factory=Counter)
    shed: int = 0
    resets: int = 0
    timeouts: int = 0
    latency_ms: dict[str, list[float]] = field(default_factory=dict)

    def add(self, call: Call, response: requests.Response, seconds: float) -> None:
        status = response.status_code
        code = ""
        if response.headers.get("Content-Type", "").startswith("application/json"):
            try:
                code = response.json().get("error", {}).get("code", "")
            except ValueError:
                code = "not-json"
        is_shed = status == 503 and "Retry-After" in response.headers
        is_shed = is_shed and code not in SHED_EXCLUDED_CODES
        # good and repeated photos must get 200; hostile requests a 4xx
        right = status == 200 if call.kind != "hostile" else 400 <= status < 500
        with self.lock:
            self.statuses[status] += 1
            self.classes[f"{status // 100}xx"] += 1
            self.latency_ms.setdefault(call.kind, []).append(seconds * 1000)
            if is_shed:
                self.shed += 1
            elif status >= 500:
                self.unexplained_5xx[f"{status} {code} ({call.name})"] += 1
            elif not right:
                self.wrong[f"{call.name}: {status} {code}"] += 1


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def worker_rss(master_pid: int) -> dict[int, int]:
    """{pid: RSS bytes} of the master's workers, read from /proc."""
    rss = {}
    for pid in worker_pids(master_pid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss[pid] = int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            continue  # the worker exited meanwhile
    return rss


def post(session: requests.Session, url: str, call: Call) -> requests.Response:
    return session.post(
        url + "/predict" + call.query,
        data=call.body,
        headers={"Content-Type": call.content_type},
        timeout=60,
    )


def cache_effect(url: str, jpeg: bytes, count: int) -> dict[str, float]:
    """p50/p90 ms of ``count`` misses (new bytes each) and ``count`` hits, one at a time.

    Each worker has its own in-process cache, so a repeated photo is a hit only on a worker
    that has seen it: answers are sorted by the ``cache`` entry of Server-Timing.
    """
    session = requests.Session()
    results: dict[str, list[float]] = {"miss": [], "hit": []}
    repeated = unique_jpeg(jpeg, -1)
    for index in range(20 * count):
        if len(results["miss"]) >= count and len(results["hit"]) >= count:
            break
        want_miss = len(results["miss"]) < count and index % 2 == 0
        body = unique_jpeg(jpeg, -1000 - index) if want_miss else repeated
        start = time.perf_counter()
        response = post(session, url, Call("cached", "timing", "", body, "image/jpeg"))
        elapsed = time.perf_counter() - start
        response.raise_for_status()
        note = response.headers.get("Server-Timing", "")
        kind = "hit" if "cache;desc=hit" in note else "miss" if "cache;desc=miss" in note else ""
        if want_miss and kind != "miss":
            raise RuntimeError(f"a new photo was not a cache miss: Server-Timing {note!r}")
        if kind and len(results[kind]) < count:
            results[kind].append(elapsed * 1000)
    return {
        f"{kind}_{stat}": round(percentile(values, q), 2)
        for kind, values in results.items()
        for stat, q in (("p50", 50), ("p90", 90))
    } | {"hits_timed": len(results["hit"]), "misses_timed": len(results["miss"])}


def soak(url: str, jpeg: bytes, args: argparse.Namespace, tally: Tally) -> None:
    """``args.concurrency`` threads posting the mix until the deadline."""
    repeated = [unique_jpeg(jpeg, -10 - i) for i in range(4)]
    hostile = hostile_calls(jpeg, args.max_upload_mb)
    deadline = time.monotonic() + args.duration
    counter = iter(range(10**9))
    counter_lock = threading.Lock()

    def next_call(rng: random.Random) -> Call:
        roll = rng.random()
        if roll < 0.35:
            with counter_lock:
                nonce = next(counter)
            return Call("good", "new_photo", "", unique_jpeg(jpeg, nonce), "image/jpeg")
        if roll < 0.75:
            return Call("cached", "repeated", "", rng.choice(repeated), "image/jpeg")
        call = rng.choice(hostile)
        if call.name == "oversize" and rng.random() > 0.2:  # 11 MB bodies: keep them rare
            call = hostile[0]
        return call

    def run(seed: int) -> None:
        rng = random.Random(seed)
        session = requests.Session()
        while time.monotonic() < deadline:
            call = next_call(rng)
            start = time.perf_counter()
            try:
                response = post(session, url, call)
            except requests.ConnectionError as exc:
                with tally.lock:
                    tally.resets += 1
                log.warning("connection error (%s): %s", call.name, exc)
                session = requests.Session()
                continue
            except requests.Timeout:
                with tally.lock:
                    tally.timeouts += 1
                continue
            tally.add(call, response, time.perf_counter() - start)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def rss_report(before: dict[int, int], after: dict[int, int]) -> list[dict[str, object]]:
    rows = []
    for pid in sorted(set(before) | set(after)):
        start, end = before.get(pid), after.get(pid)
        growth = (end - start) / start if start and end else None
        rows.append(
            {
                "pid": pid,
                "rss_start_mb": round(start / 2**20, 1) if start else None,
                "rss_end_mb": round(end / 2**20, 1) if end else None,
                "growth": round(growth, 4) if growth is not None else None,
                "note": "" if start and end else ("new worker" if end else "gone"),
            }
        )
    return rows


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=300, help="seconds of soak (300)")
    parser.add_argument("--warmup", type=float, default=30, help="seconds before the RSS baseline")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--cache-samples", type=int, default=50, help="hits and misses to time")
    parser.add_argument("--url", help="a running service (loopback) instead of starting one")
    parser.add_argument("--master-pid", type=int, help="its Gunicorn master, for RSS")
    parser.add_argument("--model", type=Path, help="exported .pt (default: random weights)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-upload-mb", type=float, default=10)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    if args.url and urlparse(args.url).hostname not in LOOPBACK:
        parser.error("--url must be a loopback address")

    jpeg = photo_640x480_jpeg()
    workdir = None
    with ExitStack() as stack:
        url, master_pid = args.url, args.master_pid
        if not url:
            workdir = Path(tempfile.mkdtemp(prefix="soak-"))  # kept (logs) if a target is missed
            model = args.model or export_model(workdir / "soak.pt", "--random-weights", quiet=True)
            direct, process = stack.enter_context(gunicorn(model, workdir, workers=args.workers))
            url, master_pid = stack.enter_context(nginx(direct, workdir)), process.pid
        log.info("timing %d cache misses and hits at %s", args.cache_samples, url)
        effect = cache_effect(url, jpeg, args.cache_samples)
        log.info("soak: concurrency %d for %.0f s", args.concurrency, args.duration)
        tally = Tally()
        baseline: dict[int, int] = {}
        rss_start = worker_rss(master_pid) if master_pid else {}

        def take_baseline() -> None:
            baseline.update(worker_rss(master_pid))

        timer = threading.Timer(min(args.warmup, args.duration / 2), take_baseline)
        if master_pid:
            timer.start()
        started = time.monotonic()
        soak(url, jpeg, args, tally)
        elapsed = time.monotonic() - started
        timer.cancel()
        rss_end = worker_rss(master_pid) if master_pid else {}

    total = sum(tally.statuses.values()) + tally.resets + tally.timeouts
    every_latency = [ms for values in tally.latency_ms.values() for ms in values]
    report = {
        "duration_s": round(elapsed, 1),
        "concurrency": args.concurrency,
        "requests": total,
        "requests_per_s": round(total / elapsed, 1),
        "by_class": dict(sorted(tally.classes.items())),
        "by_status": {str(k): v for k, v in sorted(tally.statuses.items())},
        "shed_503": tally.shed,
        "unexplained_5xx": dict(tally.unexplained_5xx),
        "wrong_answers": dict(tally.wrong),
        "connection_resets": tally.resets,
        "timeouts": tally.timeouts,
        "latency_ms": {
            kind: {
                "count": len(values),
                "p50": round(percentile(values, 50), 1),
                "p99": round(percentile(values, 99), 1),
            }
            for kind, values in sorted(tally.latency_ms.items())
        },
        "all_latency_ms": {
            "p50": round(percentile(every_latency, 50), 1),
            "p99": round(percentile(every_latency, 99), 1),
        },
        "cache_effect_ms": effect,
        "rss_after_warmup_to_end": rss_report(baseline, rss_end),
        "rss_start_to_end": rss_report(rss_start, rss_end),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    growths = [row["growth"] for row in report["rss_after_warmup_to_end"] if row["growth"]]
    failed = []
    if tally.unexplained_5xx:
        failed.append("unexplained 5xx")
    if tally.resets:
        failed.append("connection resets")
    if tally.wrong:
        failed.append("wrong answers")
    if any(growth >= RSS_GROWTH_TARGET for growth in growths):
        failed.append(f"RSS growth >= {RSS_GROWTH_TARGET:.0%}")
    print("targets:", "missed: " + ", ".join(failed) if failed else "met")
    if workdir and failed:
        print(f"server logs kept in {workdir}")
    elif workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
