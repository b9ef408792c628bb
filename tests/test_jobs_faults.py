"""/jobs under faults, with a real redis-server, real worker processes and a real Gunicorn:
a worker killed mid-job, Redis stopped and started mid-job, a full store disk, many jobs at
once, oversized bodies refused early, and API keys. Every wait polls a state with a deadline.
"""

from __future__ import annotations

import io
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from devtools.jobs_support import (
    finished,
    job_app,
    job_settings,
    poll,
    small_photos,
    worker,
    worker_env,
    zip_bytes,
)
from devtools.servers import free_port, gunicorn, redis_server

pytestmark = pytest.mark.timeout(900)
PHOTO = small_photos(1)[0]


def submit(client, files: list[tuple[str, bytes]], headers=None, **query) -> str:
    response = client.post(
        "/jobs",
        data={"file": [(io.BytesIO(body), name) for name, body in files]},
        query_string=query,
        headers=headers or {},
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()["id"]


def leftovers(folder: Path) -> list[str]:
    """Files of an attempt in progress: partial outputs and the clip scale's spill."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".part", ".f32")))


def worker_of(redis_url: str, job_id: str) -> str:
    import redis
    from rq.job import Job

    name = Job.fetch(job_id, connection=redis.Redis.from_url(redis_url)).worker_name
    assert name, f"job {job_id} has no worker"
    return name


def wait_for_text(path: Path, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{text!r} never appeared in {path}")


# -- a worker killed in the first pass of a clip-scale video ---------------------------------


@pytest.mark.parametrize("retries", [1, 0])
def test_sigkill_in_a_clip_video_leaves_no_spill_anywhere(
    model_path, redis_url, workdir, tmp_path, retries
):
    queue = f"midas-jobs-spill-{retries}"
    jobs = job_settings(redis_url, tmp_path / "store", queue, retries=retries)
    client = job_app(model_path, jobs).test_client()
    temp = tmp_path / "worker-tmp"  # the workers' system temp folder: must stay empty
    temp.mkdir()
    env = worker_env(
        redis_url,
        model_path,
        jobs.directory,
        MIDAS_JOBS_QUEUE=queue,
        MIDAS_JOBS_RETRIES=str(retries),
        TMPDIR=str(temp),
    )
    from devtools.video_clips import make_clip

    clip = make_clip(tmp_path / "clip.mp4", frames=160, audio=False).read_bytes()
    with (
        worker(f"spill-a{retries}", env, workdir) as a,
        worker(f"spill-b{retries}", env, workdir) as b,
    ):
        job_id = submit(client, [("clip.mp4", clip)], scale="clip")
        folder = jobs.directory / job_id
        body = poll(client, job_id, lambda s: s["status"] == "started" and s["progress"]["done"])
        assert body["progress"]["done"] < 160, "the kill must land in the first pass"
        victim = {f"spill-a{retries}": a, f"spill-b{retries}": b}[worker_of(redis_url, job_id)]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        # The dead worker's spill sits in the job's folder (counted, on the store's volume).
        assert [n for n in leftovers(folder) if n.startswith("midas-depth-")], leftovers(folder)
        body = poll(client, job_id, finished, timeout=300)
    if retries:
        assert body["status"] == "finished" and body["attempts"] == 2, body
        assert body["progress"]["done"] == body["progress"]["total"] == 320
    else:
        assert body["status"] == "failed" and "stopped (killed or lost)" in body["error"], body
    assert leftovers(folder) == []
    assert list(temp.iterdir()) == []


# -- Redis stopped and started under a running job -------------------------------------------


def test_redis_stopped_and_started_mid_job_the_job_goes_on(model_path, workdir, tmp_path):
    import redis

    port = free_port()
    data = tmp_path / "redis-data"  # the restarted server loads what the stopped one saved
    data.mkdir()
    first = redis_server(data, port)
    url = first.__enter__()
    jobs = job_settings(url, tmp_path / "store", "midas-jobs-blip")
    client = job_app(model_path, jobs).test_client()
    env = worker_env(url, model_path, jobs.directory, MIDAS_JOBS_QUEUE=jobs.queue)
    photos = small_photos(300)
    archive = zip_bytes({f"{i}.jpg": photo for i, photo in enumerate(photos)})
    try:
        with worker("blip", env, workdir) as process:
            job_id = submit(client, [("a.zip", archive)])
            poll(client, job_id, lambda s: s["status"] == "started" and s["progress"]["done"])
            redis.Redis.from_url(url).shutdown(save=True)
            first.__exit__(None, None, None)
            wait_for_text(workdir / "worker-blip.log", "progress not written")
            down = client.get("/metrics")  # still answers, and says the queue's Redis is down
            assert down.status_code == 200
            assert "\nmidas_jobs_redis_up 0.0\n" in down.get_data(as_text=True)
            with redis_server(data, port):
                body = poll(client, job_id, finished, timeout=300)
                assert process.poll() is None
                back = client.get("/metrics").get_data(as_text=True)
                assert "\nmidas_jobs_redis_up 1.0\n" in back
    finally:
        first.__exit__(None, None, None)
    assert body["status"] == "finished" and body["attempts"] == 1, body
    assert body["summary"]["ok"] == 300


# -- a full disk in the job store ------------------------------------------------------------


@contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of ``size`` mounted at ``path`` (tests run as root)."""
    path.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_store_disk_is_a_507_and_a_clip_spill_that_cannot_fit_fails_early(
    model_path, redis_url, workdir, tmp_path
):
    from devtools.video_clips import make_clip

    with small_disk(tmp_path / "store", "3m") as store:
        jobs = job_settings(redis_url, store, "midas-jobs-disk", max_store_mb=100)
        client = job_app(model_path, jobs).test_client()
        big = PHOTO + bytes(4 * 1024 * 1024)  # more than the disk holds, less than the quota
        response = client.post("/jobs", data={"file": (io.BytesIO(big), "big.jpg")})
        assert response.status_code == 507, response.get_data(as_text=True)
        error = response.get_json()["error"]
        assert error["code"] == "quota_exceeded" and "disk is full" in error["message"]
        assert not any(store.glob("*/job.json"))
        assert shutil.disk_usage(store).used < 512 * 1024  # the refused upload's room is back
        # A Matroska clip declares no frame count; its spill (60 x 160 x 120 x 4 bytes, 4.6 MB)
        # cannot fit on this disk: the job fails before the first frame.
        clip = make_clip(tmp_path / "clip.mp4", frames=60, width=160, height=120, audio=False)
        mkv = tmp_path / "clip.mkv"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-c", "copy", str(mkv)], check=True
        )
        env = worker_env(redis_url, model_path, store, MIDAS_JOBS_QUEUE=jobs.queue)
        with worker("disk", env, workdir):
            video = submit(client, [("clip.mkv", mkv.read_bytes())], scale="clip")
            body = poll(client, video, finished, timeout=300)
            assert body["status"] == "failed" and "free" in body["error"], body
            assert body["progress"]["done"] == 0
            assert leftovers(store / video) == []
            good = submit(client, [("a.jpg", PHOTO)])
            assert poll(client, good, finished)["status"] == "finished"


# -- 16 jobs at once ---------------------------------------------------------------------------


def test_16_jobs_at_once_all_finish_with_their_own_results(
    model_path, redis_url, workdir, tmp_path
):
    jobs = job_settings(redis_url, tmp_path / "store", "midas-jobs-sixteen")
    app = job_app(model_path, jobs)
    photos = small_photos(32)
    env = worker_env(redis_url, model_path, jobs.directory, MIDAS_JOBS_QUEUE=jobs.queue)

    def send(index: int) -> str:
        pair = photos[2 * index : 2 * index + 2]
        return submit(app.test_client(), [(f"{index}-a.jpg", pair[0]), (f"{index}-b.jpg", pair[1])])

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(send, range(16)))
    assert len(set(ids)) == 16
    client = app.test_client()
    with worker("many-a", env, workdir), worker("many-b", env, workdir):
        bodies = [poll(client, job_id, finished, timeout=600) for job_id in ids]
    assert [b["status"] for b in bodies] == ["finished"] * 16
    import zipfile

    for index, job_id in enumerate(ids):
        result = zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{job_id}/result").data))
        assert sorted(result.namelist()) == [f"{index}-a.jpg", f"{index}-b.jpg", "report.json"]


# -- keys --------------------------------------------------------------------------------------


def test_no_job_is_read_fetched_or_canceled_by_another_key_or_none(
    model_path, redis_url, workdir, tmp_path
):
    jobs = job_settings(redis_url, tmp_path / "store", "midas-jobs-owners")
    client = job_app(model_path, jobs, api_keys=("alpha", "beta")).test_client()
    alpha, beta = {"X-API-Key": "alpha"}, {"Authorization": "Bearer beta"}
    job_id = submit(client, [("a.jpg", PHOTO)], headers=alpha)
    paths = (f"/jobs/{job_id}", f"/jobs/{job_id}/result")
    for headers, status, code in ((beta, 404, "job_not_found"), ({}, 401, "unauthorized")):
        for path in paths:
            response = client.get(path, headers=headers)
            assert response.status_code == status and response.get_json()["error"]["code"] == code
        response = client.delete(f"/jobs/{job_id}", headers=headers)
        assert response.status_code == status and response.get_json()["error"]["code"] == code
    env = worker_env(redis_url, model_path, jobs.directory, MIDAS_JOBS_QUEUE=jobs.queue)
    with worker("owners", env, workdir):
        body = poll(client, job_id, finished, headers=alpha)
    assert body["status"] == "finished"  # the others' cancels did nothing
    assert client.get(paths[1], headers=alpha).status_code == 200
    for headers in (beta, {}):
        assert client.delete(f"/jobs/{job_id}", headers=headers).status_code in (401, 404)
    assert (jobs.directory / job_id / "result.zip").is_file()


# -- refusals of large bodies through a real Gunicorn -------------------------------------------


def test_refusals_of_large_bodies_reach_the_client_as_json(model_path, workdir, tmp_path):
    """401, 507 and 503 are decided before a /jobs body is read; the client, which sends its
    whole body before reading (requests, like urllib), must still get the JSON, not a reset.
    (This Gunicorn already delivers them whole; the app also reads a /jobs body to its end,
    up to twice MIDAS_JOBS_MAX_UPLOAD_MB, before refusing, as for /predict.)"""
    port = free_port()
    data = tmp_path / "redis-data"
    data.mkdir()
    queue_redis = redis_server(data, port)
    url = queue_redis.__enter__()
    env = {
        "REDIS_URL": url,
        "MIDAS_JOBS_DIR": str(tmp_path / "store"),
        "MIDAS_JOBS_QUEUE": "midas-jobs-gunicorn",
        "MIDAS_JOBS_MAX_MB": "1",
        "MIDAS_JOBS_MAX_UPLOAD_MB": "64",
        "MIDAS_MAX_UPLOAD_MB": "1",
        "MIDAS_API_KEYS": "alpha",
        "MIDAS_CACHE_MB": "0",
        "MIDAS_THREADS": "1",
    }
    body = PHOTO + bytes(30 * 1024 * 1024)
    # As urllib sends it: the server closes after the answer, so unread bytes would reset it.
    close = {"Connection": "close"}
    key = {"X-API-Key": "alpha", **close}

    try:
        with gunicorn(model_path, workdir, workers=1, **env) as (base, _):
            files = {"file": ("big.jpg", body)}
            answers = {
                "no key": requests.post(f"{base}/jobs", files=files, headers=close, timeout=120),
                "over the quota": requests.post(
                    f"{base}/jobs", files=files, headers=key, timeout=120
                ),
            }
            queue_redis.__exit__(None, None, None)
            answers["queue down"] = requests.post(
                f"{base}/jobs", files=files, headers=key, timeout=120
            )
            expected = {
                "no key": (401, "unauthorized"),
                "over the quota": (507, "quota_exceeded"),
                "queue down": (503, "jobs_unavailable"),
            }
            for name, response in answers.items():
                status, code = expected[name]
                assert response.status_code == status, (name, response.text)
                assert response.json()["error"]["code"] == code, name
            assert requests.get(f"{base}/healthz", timeout=30).status_code == 200
    finally:
        queue_redis.__exit__(None, None, None)


def test_a_chunked_multipart_upload_through_gunicorn_is_held_to_the_quota(
    model_path, redis_url, workdir, tmp_path
):
    from werkzeug.test import EnvironBuilder

    env = {
        "REDIS_URL": redis_url,
        "MIDAS_JOBS_DIR": str(tmp_path / "store"),
        "MIDAS_JOBS_QUEUE": "midas-jobs-chunked",
        "MIDAS_JOBS_MAX_MB": "1",
        "MIDAS_CACHE_MB": "0",
        "MIDAS_THREADS": "1",
    }
    multipart = EnvironBuilder(
        method="POST", data={"file": (io.BytesIO(PHOTO + bytes(2 * 1024 * 1024)), "big.jpg")}
    ).get_environ()
    payload = multipart["wsgi.input"].read()

    def chunks(data: bytes):
        for start in range(0, len(data), 256 * 1024):
            yield data[start : start + 256 * 1024]

    with gunicorn(model_path, workdir, workers=1, **env) as (base, _):
        headers = {"Content-Type": multipart["CONTENT_TYPE"]}
        response = requests.post(f"{base}/jobs", data=chunks(payload), headers=headers, timeout=120)
        assert response.status_code == 507, response.text
        assert response.json()["error"]["code"] == "quota_exceeded"
        small = EnvironBuilder(method="POST", data={"file": (io.BytesIO(PHOTO), "a.jpg")})
        environ = small.get_environ()
        ok = requests.post(
            f"{base}/jobs",
            data=chunks(environ["wsgi.input"].read()),
            headers={"Content-Type": environ["CONTENT_TYPE"]},
            timeout=120,
        )
        assert ok.status_code == 202, ok.text
