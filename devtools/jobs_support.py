"""Helpers for the job tests: real worker processes, zips of photos, polling a job's status."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from devtools.servers import stop
from devtools.support import ROOT
from midas_service.config import JobSettings, Settings

FINAL = ("finished", "failed", "canceled")


def small_photos(count: int, width: int = 96, height: int = 64) -> list[bytes]:
    """``count`` different real-looking photos (crops of scikit-image's chelsea) as JPEG."""
    from skimage import data

    cat = cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR)
    photos = []
    for index in range(count):
        y, x = (index * 7) % (cat.shape[0] - height), (index * 13) % (cat.shape[1] - width)
        ok, buffer = cv2.imencode(".jpg", np.ascontiguousarray(cat[y : y + height, x : x + width]))
        assert ok
        photos.append(buffer.tobytes())
    return photos


def zip_bytes(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A zip of ``entries`` (name -> bytes, names written as given) and symbolic ``links``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name), data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16) | 0  # S_IFLNK | rwx
            info.create_system = 3  # Unix
            archive.writestr(info, target)
    return buffer.getvalue()


def worker_env(redis_url: str, model_path: Path, jobs_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "MIDAS_MODEL_PATH": str(model_path),
        "MIDAS_RANDOM_WEIGHTS": "1",
        "MIDAS_THREADS": "1",
        "MIDAS_SHARE_CORES": "off",
        "MIDAS_WARMUP_RUNS": "1",
        "MIDAS_JOBS_DIR": str(jobs_dir),
        "MIDAS_JOBS_HEARTBEAT_S": "0.5",
        "MIDAS_JOBS_TAKEOVER_S": "2",
        **extra,
    }


def wait_registered(redis_url: str, name: str, process: subprocess.Popen, timeout: float = 120):
    """Wait until the worker ``name`` is registered in RQ (it has loaded the model)."""
    import redis
    from rq import Worker

    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker {name} exited with {process.returncode}")
        if any(worker.name == name for worker in Worker.all(connection=client)):
            return
        time.sleep(0.05)
    raise TimeoutError(f"worker {name} did not register within {timeout} s")


@contextmanager
def worker(
    name: str, env: dict[str, str], workdir: Path, *extra_args: str, wait: bool = True
) -> Iterator[subprocess.Popen]:
    """A real ``python -m midas_service worker`` process, stopped (SIGTERM) afterwards."""
    log_path = workdir / f"worker-{name}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "midas_service", "worker", "--name", name, *extra_args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        if wait:
            wait_registered(env["REDIS_URL"], name, process)
        yield process
    finally:
        stop(process)


def poll(client, job_id: str, until, timeout: float = 90, headers=None) -> dict:
    """GET the job's status until ``until(body)`` holds; the last body."""
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        response = client.get(f"/jobs/{job_id}", headers=headers or {})
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        if until(body):
            return body
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} never reached the state wanted; last {body}")


def finished(body: dict) -> bool:
    return body["status"] in FINAL


def clip_bytes(frames: int = 12, width: int = 96, height: int = 64) -> bytes:
    """A short H.264 MP4 of moving crops of a real photo, made with PyAV."""
    import av
    import cv2
    from skimage import data

    cat = data.chelsea()
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(frames):
            crop = cv2.resize(
                cat[index * 4 : index * 4 + 200, index * 6 : index * 6 + 300], (width, height)
            )
            for packet in stream.encode(av.VideoFrame.from_ndarray(crop, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def job_settings(redis_url: str, directory: Path, queue: str, **overrides) -> JobSettings:
    """Job settings for a test: quick heartbeats and takeover, ``overrides`` on top."""
    values = dict(
        redis_url=redis_url, directory=directory, queue=queue, heartbeat_s=0.5, takeover_s=2
    )
    return JobSettings(**(values | overrides))  # type: ignore[arg-type]


def job_app(model_path: Path, jobs: JobSettings, load: bool = False, **settings):
    """The web app with ``jobs`` (one thread, small uploads, no cache); ``load``: load the
    model now (the /jobs routes themselves need none)."""
    from midas_service.web import create_app

    base = dict(
        model_path=model_path,
        allow_untrained=True,
        warmup_runs=1,
        threads=1,
        share_cores="off",
        max_upload_mb=2,
        cache_mb=0,
    )
    app = create_app(Settings(**(base | settings)), load_model=False, jobs=jobs)  # type: ignore[arg-type]
    app.config["TESTING"] = True
    if load:
        app.extensions["midas_runtime"].load()
    return app
