"""Jobs under load: a zip of many photos through /jobs on two real workers, against the batch
CLI on the same photos and machine; then the takeover time of a SIGKILLed worker's job.

    python -m devtools.jobs_load                    # 500 photos (320x240 JPEG), two workers
    python -m devtools.jobs_load --photos 50        # a quick run

Starts a throwaway redis-server, Gunicorn (the service, gunicorn.conf.py) and two
``python -m midas_service worker`` processes, all on loopback. While the job runs, /predict is
called once a second and must keep answering 200. Prints one JSON object (also --json FILE).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from contextlib import ExitStack
from pathlib import Path

import requests

from devtools.jobs_support import small_photos, worker, worker_env
from devtools.servers import gunicorn, redis_server
from devtools.support import export_model

ROOT = Path(__file__).resolve().parent.parent

log = logging.getLogger("jobs_load")


def submit(url: str, archive: bytes) -> str:
    response = requests.post(
        f"{url}/jobs", files={"file": ("photos.zip", archive, "application/zip")}, timeout=120
    )
    response.raise_for_status()
    return response.json()["id"]


def wait_for(url: str, job_id: str, until, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = requests.get(f"{url}/jobs/{job_id}", timeout=10).json()
        if until(body):
            return body
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id}: {body}")


def done(body: dict) -> bool:
    return body["status"] in ("finished", "failed", "canceled")


def keep_predicting(url: str, photo: bytes, stop: threading.Event, seen: list) -> None:
    """One /predict a second while the jobs run: (status, seconds) of each."""
    while not stop.wait(1.0):
        start = time.monotonic()
        try:
            status = requests.post(
                f"{url}/predict", data=photo, headers={"Content-Type": "image/jpeg"}, timeout=30
            ).status_code
        except requests.RequestException:
            status = 0
        seen.append((status, time.monotonic() - start))


def batch_cli(model: Path, photos: list[bytes], workdir: Path) -> float:
    """Seconds the batch CLI takes for the same photos (heatmap PNG, the CLI's default)."""
    folder = workdir / "cli-in"
    folder.mkdir()
    for index, photo in enumerate(photos):
        (folder / f"{index}.jpg").write_bytes(photo)
    start = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "midas_service", "predict", str(folder), "--model", str(model),
         "--output-dir", str(workdir / "cli-out"), "--threads", "1"],
        check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "MIDAS_ALLOW_NO_METADATA": "1"},
    )  # fmt: skip
    return time.monotonic() - start


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="exported .pt (default: export random weights)")
    parser.add_argument("--photos", type=int, default=500)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobs-load-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        model = args.model or export_model(workdir / "m.pt", "--random-weights", quiet=True)
        photos = small_photos(args.photos, 320, 240)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for index, photo in enumerate(photos):
                archive.writestr(f"{index}.jpg", photo)
        redis_url = stack.enter_context(redis_server(workdir))
        store = workdir / "store"
        common = {"REDIS_URL": redis_url, "MIDAS_JOBS_DIR": str(store)}
        url, _ = stack.enter_context(
            gunicorn(model, workdir, workers=1, MIDAS_THREADS="1", **common)
        )
        # The documented defaults, not the tests' short ones: the takeover measured is the real one.
        env = worker_env(
            redis_url, model, store, MIDAS_JOBS_HEARTBEAT_S="5", MIDAS_JOBS_TAKEOVER_S="15"
        )
        workers = [stack.enter_context(worker(name, env, workdir)) for name in ("load-1", "load-2")]
        log.info("%d photos, 2 workers, 1 thread each", len(photos))
        # Two jobs of half the photos each: both workers busy, as two clients would make them.
        half = len(photos) // 2
        zips = []
        for part in (photos[:half], photos[half:]):
            part_buffer = io.BytesIO()
            with zipfile.ZipFile(part_buffer, "w") as archive:
                for index, photo in enumerate(part):
                    archive.writestr(f"{index}.jpg", photo)
            zips.append(part_buffer.getvalue())
        stop, seen = threading.Event(), []
        probe = threading.Thread(target=keep_predicting, args=(url, photos[0], stop, seen))
        probe.start()
        start = time.monotonic()
        ids = [submit(url, data) for data in zips]
        bodies = [wait_for(url, job_id, done, 3600) for job_id in ids]
        jobs_s = time.monotonic() - start
        stop.set()
        probe.join()
        assert all(b["status"] == "finished" for b in bodies), bodies
        ok = sum(b["summary"]["ok"] for b in bodies)
        log.info("jobs: %d photos in %.1f s", ok, jobs_s)
        # Takeover: the first half again, its worker (RQ knows which) SIGKILLed once started.
        job_id = submit(url, zips[0])
        wait_for(url, job_id, lambda b: b["progress"]["done"] > 0, 600)
        from redis import Redis
        from rq.job import Job

        running_on = Job.fetch(job_id, connection=Redis.from_url(redis_url)).worker_name
        victim = workers[0] if running_on == "load-1" else workers[1]
        victim.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        wait_for(url, job_id, lambda b: b["attempts"] >= 2, 600)
        takeover_s = time.monotonic() - killed
        final = wait_for(url, job_id, done, 3600)
        cli_s = batch_cli(model, photos, workdir)
        result = {
            "photos": len(photos),
            "photo_size": "320x240 JPEG",
            "workers": 2,
            "threads_per_worker": 1,
            "jobs_seconds": round(jobs_s, 1),
            "jobs_photos_per_s": round(ok / jobs_s, 2),
            "cli_seconds": round(cli_s, 1),
            "cli_photos_per_s": round(len(photos) / cli_s, 2),
            "predict_during_jobs": {
                "calls": len(seen),
                "ok": sum(1 for status, _ in seen if status == 200),
                "max_s": round(max((s for _, s in seen), default=0), 2),
            },
            "takeover_s": round(takeover_s, 1),
            "takeover_job_status": final["status"],
            "cpus": os.cpu_count(),
        }
        print(json.dumps(result, indent=1))
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
