"""Overload, reload and stop figures of a real Gunicorn on this machine (for the reliability note).

    python -m devtools.overload_drill --model models/midas_small.pt \\
        [--concurrency 64 --per-client 4]

Starts its own Gunicorn (gunicorn.conf.py, 2 workers unless --workers) on a free port and prints:
1. a burst: ``--concurrency`` clients each sending ``--per-client`` 640x480 JPEGs back to back
   (no waiting on Retry-After): answers by status, p50/p99 of the 200s and of the 503s;
2. SIGHUP (reload) under c=4 load: answers by outcome, resets counted;
3. SIGTERM under c=4 load with MIDAS_DRAIN_S=--drain: answers by outcome, resets counted.
(2 and 3 count losses, not shedding, so they run with long queue and warm-up waits.)
The result cache is off (the same photo is sent each time). Outcomes are those of
devtools/load.py: ``refused`` never reached the socket (after the drain, by design), ``reset`` is
a request lost after it reached it (target 0).
Timings on a shared machine are noisy; the client threads share the CPU with the service.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path

import requests

from devtools.load import SteadyLoad, burst, summary
from devtools.servers import gunicorn, wait_for
from devtools.support import photo_640x480_jpeg

ROOT = Path(__file__).resolve().parent.parent

log = logging.getLogger("overload")


def overload_burst(args: argparse.Namespace, workdir: Path, photo: bytes) -> dict[str, object]:
    env = {"MIDAS_QUEUE_TIMEOUT_S": str(args.queue_timeout), "MIDAS_CACHE_MB": "0"}
    with gunicorn(args.model, workdir, workers=args.workers, **env) as (url, _):
        for _ in range(4):  # warm both workers' first requests
            requests.post(f"{url}/predict", data=photo, timeout=30)
        start = time.monotonic()
        results = burst(f"{url}/predict", photo, args.concurrency, args.per_client)
        report = summary(results)
        report["seconds"] = round(time.monotonic() - start, 2)
        report["concurrency"] = args.concurrency
        report["requests_per_client"] = args.per_client
        return report


def under_load(
    args: argparse.Namespace, workdir: Path, photo: bytes, sig: signal.Signals
) -> dict[str, object]:
    # These runs count lost requests, not shed ones: generous waits, as in tests/test_lifecycle.py
    # (on a busy shared CPU a warm-up or a c=4 turn can take longer than the defaults).
    env = {"MIDAS_DRAIN_S": str(args.drain), "MIDAS_QUEUE_TIMEOUT_S": "60"}
    env.update(MIDAS_READY_WAIT_S="120", MIDAS_CACHE_MB="0")
    with gunicorn(args.model, workdir, workers=args.workers, **env) as (url, process):
        with SteadyLoad(f"{url}/predict", photo, concurrency=4, timeout=120) as load:
            load.wait_for_answers(8)
            process.send_signal(sig)
            if sig == signal.SIGHUP:
                time.sleep(args.drain + 2)  # the reload and a while after it
                wait_for(f"{url}/readyz", process)
            else:
                process.wait(timeout=args.drain + 40)
                load.wait_until_done(timeout=40)
        report = summary(load.results)
        report["signal"] = sig.name
        report["exit_code"] = process.poll()
        return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="exported .pt (.onnx beside)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--per-client", type=int, default=4)
    parser.add_argument("--drain", type=float, default=2.0, help="MIDAS_DRAIN_S for SIGTERM")
    parser.add_argument("--queue-timeout", type=float, default=1.0, help="MIDAS_QUEUE_TIMEOUT_S")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    photo = photo_640x480_jpeg()
    report = {}
    with tempfile.TemporaryDirectory(prefix="midas-overload-") as tmp:
        for name, run in (
            ("burst", lambda d: overload_burst(args, d, photo)),
            ("sighup", lambda d: under_load(args, d, photo, signal.SIGHUP)),
            ("sigterm", lambda d: under_load(args, d, photo, signal.SIGTERM)),
        ):
            workdir = Path(tmp) / name
            workdir.mkdir()
            report[name] = run(workdir)
            log.info("%s: %s", name, json.dumps(report[name]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
