"""/jobs against a real redis-server and real worker processes (``python -m midas_service worker``).

Outputs are compared byte for byte with what /predict answers for the same photo and options.
"""

from __future__ import annotations

import io
import json
import signal
import time
import zipfile
from pathlib import Path

import pytest

from devtools.jobs_support import (
    clip_bytes,
    finished,
    job_app,
    job_settings,
    poll,
    small_photos,
    worker,
    worker_env,
    zip_bytes,
)
from devtools.servers import redis_server
from midas_service.config import JobSettings

QUEUE = "midas-jobs-test"
# The first test also waits for the session's model export and a worker's start, which on a
# shared, loaded machine can pass the default 300 s.
pytestmark = pytest.mark.timeout(900)


def make_app(model_path: Path, jobs: JobSettings, **settings):
    """The app with its model loaded (the photo-job tests compare against /predict)."""
    return job_app(model_path, jobs, load=True, **settings)


@pytest.fixture(scope="module")
def app(model_path, redis_url, jobs_dir):
    return make_app(model_path, job_settings(redis_url, jobs_dir, QUEUE))


@pytest.fixture(scope="module")
def running_worker(model_path, redis_url, jobs_dir, workdir):
    env = worker_env(redis_url, model_path, jobs_dir, MIDAS_JOBS_QUEUE=QUEUE)
    with worker("main", env, workdir) as process:
        yield process


@pytest.fixture
def client(app):
    return app.test_client()


def submit(client, files: list[tuple[str, bytes]], headers=None, **query) -> dict:
    data = {"file": [(io.BytesIO(body), name) for name, body in files]}
    response = client.post(
        "/jobs",
        data=data,
        query_string=query,
        headers=headers or {},
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()
    assert response.headers["Location"] == body["status_url"] == f"/jobs/{body['id']}"
    assert body["result_url"] == f"/jobs/{body['id']}/result" and body["status"] == "queued"
    return body


def predict(client, photo: bytes, **query) -> bytes:
    response = client.post("/predict", data=photo, content_type="image/jpeg", query_string=query)
    assert response.status_code == 200
    return response.data


def long_archive(count: int) -> bytes:
    """A zip of ``count`` copies of one 32x32 photo: each a full run of the network at 256x256
    (milliseconds on any CPU), so a job of hundreds or thousands of them is long by
    construction while the zip stays small and quick to make."""
    photo = small_photos(1, 32, 32)[0]
    return zip_bytes({f"{i}.jpg": photo for i in range(count)})


def running(body: dict) -> bool:
    """Started, and the attempt counted: what a signal or cancel may interrupt."""
    return body["status"] == "started" and body["attempts"] >= 1


def result_zip(client, job_id: str) -> zipfile.ZipFile:
    response = client.get(f"/jobs/{job_id}/result")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    assert "attachment" in response.headers["Content-Disposition"]
    return zipfile.ZipFile(io.BytesIO(response.data))


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"output": "depth", "format": "npy"},
        {"output": "side", "colormap": "viridis"},
        {"output": "mesh"},
    ],
)
def test_zip_round_trip_gives_predicts_bytes_per_photo(client, running_worker, jobs_dir, query):
    photos = small_photos(3)
    archive = zip_bytes(
        {"a.jpg": photos[0], "sub/b.jpg": photos[1], "sub/deeper/c.jpeg": photos[2]}
    )
    job = submit(client, [("photos.zip", archive)], **query)
    body = poll(client, job["id"], finished)
    assert body["status"] == "finished", body
    assert body["progress"] == {"done": 3, "total": 3}
    assert body["summary"]["ok"] == 3 and body["error"] is None
    outputs = result_zip(client, job["id"])
    report = json.loads(outputs.read("report.json"))
    by_name = {item["name"]: item for item in report}
    for name, photo in zip(("a.jpg", "sub/b.jpg", "sub/deeper/c.jpeg"), photos, strict=True):
        assert by_name[name]["status"] == "ok"
        assert outputs.read(by_name[name]["output"]) == predict(client, photo, **query)
    assert set(outputs.namelist()) == {"report.json", *(i["output"] for i in report)}


def test_several_photo_fields_make_one_job(client, running_worker):
    photos = small_photos(2)
    job = submit(client, [("one.jpg", photos[0]), ("two.jpg", photos[1])], format="png")
    assert poll(client, job["id"], finished)["status"] == "finished"
    outputs = result_zip(client, job["id"])
    assert outputs.read("one.png") == predict(client, photos[0], format="png")
    assert outputs.read("two.png") == predict(client, photos[1], format="png")


def test_hostile_entries_are_skipped_and_reported_and_nothing_escapes(
    client, running_worker, jobs_dir
):
    photo = small_photos(1)[0]
    archive = zip_bytes(
        {
            "ok.jpg": photo,
            "../escape.jpg": photo,
            "/absolute.jpg": photo,
            "C:\\windows.jpg": photo,
            "sub/../../up.jpg": photo,
            "notes.txt": b"not a photo at all",
            "half.jpg": photo[: len(photo) // 3],
        },
        links={"link.jpg": "/etc/passwd"},
    )
    job = submit(client, [("hostile.zip", archive)])
    body = poll(client, job["id"], finished)
    assert body["status"] == "finished", body
    summary = body["summary"]
    assert (summary["ok"], summary["skipped"], summary["failed"]) == (1, 5, 2)
    report = {
        item["name"]: item for item in json.loads(result_zip(client, job["id"]).read("report.json"))
    }
    for name in ("../escape.jpg", "/absolute.jpg", "C:\\windows.jpg", "sub/../../up.jpg"):
        assert report[name] == {"name": name, "status": "skipped", "error": "unsafe path: not read"}
    assert report["link.jpg"]["status"] == "skipped" and "link" in report["link.jpg"]["error"]
    assert report["notes.txt"]["code"] == "unsupported_media_type"
    assert report["half.jpg"]["code"] == "undecodable_image"
    assert result_zip(client, job["id"]).namelist() == ["ok.jpg", "report.json"]
    # Only the job's folder was written: its input, result and report, nothing else anywhere.
    folder = jobs_dir / job["id"]
    written = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert written == ["input/0.bin", "job.json", "report.json", "result.zip"]
    assert not list(jobs_dir.parent.rglob("escape.jpg")) and not list(
        jobs_dir.parent.rglob("up.jpg")
    )


def test_archives_refused_as_a_whole(app, model_path, redis_url, tmp_path):
    limited = make_app(
        model_path,
        job_settings(redis_url, tmp_path / "store", QUEUE, max_entries=3, max_unzipped_mb=1),
    )
    client = limited.test_client()
    photo = small_photos(1)[0]
    cases = {
        "more than the limit of 3": zip_bytes({f"{i}.jpg": photo for i in range(4)}),
        "expands to": zip_bytes({"big.jpg": bytes(2 * 1024 * 1024)}),
        "not a readable zip": b"PK\x03\x04" + b"\x00" * 100,
    }
    for words, archive in cases.items():
        response = client.post("/jobs", data={"file": (io.BytesIO(archive), "x.zip")})
        assert response.status_code == 400, words
        error = response.get_json()["error"]
        assert error["code"] == "bad_archive" and words in error["message"]
    assert not any((tmp_path / "store").glob("*/job.json"))  # no job was made


def test_a_corrupt_input_fails_the_job_with_a_readable_error(client, running_worker):
    photo = small_photos(1)[0]
    job = submit(client, [("broken.jpg", photo[: len(photo) // 4])])
    body = poll(client, job["id"], finished)
    assert body["status"] == "failed"
    assert "no photo could be processed" in body["error"] and "broken.jpg" in body["error"]
    response = client.get(f"/jobs/{job['id']}/result")
    assert (
        response.status_code == 409 and response.get_json()["error"]["code"] == "job_not_finished"
    )


def test_bad_requests(client):
    cases = [
        ({}, {}, 400, "missing_file"),
        ({"file": (io.BytesIO(b""), "empty.jpg")}, {}, 400, "missing_file"),
        ({"image": (io.BytesIO(b"x"), "a.jpg")}, {}, 400, "bad_parameter"),
        (
            {"file": (io.BytesIO(small_photos(1)[0]), "a.jpg")},
            {"scale": "frame"},
            400,
            "bad_parameter",
        ),
        (
            {"file": (io.BytesIO(small_photos(1)[0]), "a.jpg")},
            {"output": "sculpture"},
            400,
            "bad_parameter",
        ),
        (
            {"file": (io.BytesIO(small_photos(1)[0]), "a.jpg")},
            {"format": "glb"},  # a mesh's format, not a heatmap's
            400,
            "bad_parameter",
        ),
    ]
    for data, query, status, code in cases:
        response = client.post(
            "/jobs", data=data, query_string=query, content_type="multipart/form-data"
        )
        assert response.status_code == status and response.get_json()["error"]["code"] == code
    missing = client.get("/jobs/" + "A" * 24)
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "job_not_found"
    assert client.get("/jobs/../../etc").status_code == 404


def test_cancel_a_queued_job_and_a_running_one(model_path, redis_url, workdir, tmp_path):
    jobs = job_settings(redis_url, tmp_path / "store", queue="midas-jobs-cancel")
    client = make_app(model_path, jobs).test_client()
    # 2,000 photos: the job outlasts, on any machine, the cancel that follows its first
    # progress step by one poll (and the worker's next progress step, at most 0.5 s later).
    archive = long_archive(2000)
    # No worker on this queue yet: the job waits, and a cancel takes it out of the queue.
    queued = submit(client, [("a.zip", archive)])
    response = client.delete(f"/jobs/{queued['id']}")
    assert response.status_code == 202 and response.get_json()["status"] == "canceled"
    assert client.get(f"/jobs/{queued['id']}").get_json()["status"] == "canceled"
    running = submit(client, [("b.zip", archive)])
    env = worker_env(redis_url, model_path, jobs.directory, MIDAS_JOBS_QUEUE=jobs.queue)
    with worker("canceler", env, workdir):
        poll(
            client, running["id"], lambda b: b["status"] == "started" and b["progress"]["done"] > 0
        )
        assert client.delete(f"/jobs/{running['id']}").status_code == 202
        body = poll(client, running["id"], finished)
    assert body["status"] == "canceled" and body["error"] == "canceled by its owner"
    assert 0 < body["progress"]["done"] < 2000
    # The partial result went with the run: only the upload and the record stay until deleted.
    kept = sorted(p.name for p in (jobs.directory / running["id"]).rglob("*"))
    assert not [name for name in kept if "result" in name or name.endswith(".part")], kept
    assert client.get(f"/jobs/{running['id']}/result").status_code == 409
    # Deleting a job that is over removes it and its files.
    assert client.delete(f"/jobs/{running['id']}").status_code == 204
    assert client.get(f"/jobs/{running['id']}").status_code == 404
    assert not (jobs.directory / running["id"]).exists()


def test_results_expire_with_their_files(model_path, redis_url, running_worker, jobs_dir):
    client = make_app(model_path, job_settings(redis_url, jobs_dir, QUEUE, ttl_s=3)).test_client()
    job = submit(client, [("a.jpg", small_photos(1)[0])])
    assert poll(client, job["id"], finished)["status"] == "finished"
    assert client.get(f"/jobs/{job['id']}/result").status_code == 200
    folder = jobs_dir / job["id"]
    expires = json.loads((folder / "job.json").read_text())["expires"]
    while time.time() < expires:  # the TTL is the thing under test: wait it out
        time.sleep(0.1)
    gone = client.get(f"/jobs/{job['id']}")
    assert gone.status_code == 404 and gone.get_json()["error"]["code"] == "job_not_found"
    deadline = time.monotonic() + 30
    while folder.exists() and time.monotonic() < deadline:  # the worker's sweep removes it
        time.sleep(0.1)
    assert not folder.exists()


def test_a_job_is_visible_only_with_the_key_that_made_it(model_path, redis_url, tmp_path):
    jobs = job_settings(redis_url, tmp_path / "store", queue="midas-jobs-keys")
    client = make_app(model_path, jobs, api_keys=("alpha", "beta")).test_client()
    alpha, beta = {"X-API-Key": "alpha"}, {"Authorization": "Bearer beta"}
    photo = small_photos(1)[0]
    assert client.post("/jobs", data={"file": (io.BytesIO(photo), "a.jpg")}).status_code == 401
    job = submit(client, [("a.jpg", photo)], headers=alpha)
    assert client.get(f"/jobs/{job['id']}", headers=alpha).status_code == 200
    for path in (f"/jobs/{job['id']}", f"/jobs/{job['id']}/result"):
        other = client.get(path, headers=beta)
        assert other.status_code == 404 and other.get_json()["error"]["code"] == "job_not_found"
    assert client.delete(f"/jobs/{job['id']}", headers=beta).status_code == 404
    assert client.get(f"/jobs/{job['id']}").status_code == 401
    spec = client.get("/openapi.json").get_json()
    assert spec["paths"]["/jobs"]["post"]["security"] == [{"bearer": []}, {"apiKey": []}]


def test_quota_refuses_new_jobs_clearly(model_path, redis_url, tmp_path):
    jobs = job_settings(redis_url, tmp_path / "store", queue="midas-jobs-quota", max_store_mb=0.05)
    client = make_app(model_path, jobs).test_client()
    photo = small_photos(1, 320, 240)[0]
    jobs.directory.mkdir(parents=True)
    (jobs.directory / "filler").write_bytes(bytes(60_000))
    response = client.post("/jobs", data={"file": (io.BytesIO(photo), "b.jpg")})
    assert response.status_code == 507
    error = response.get_json()["error"]
    assert error["code"] == "quota_exceeded" and "MIDAS_JOBS_MAX_MB" in error["message"]


def worker_of(redis_url: str, job_id: str) -> str:
    """The name of the RQ worker running ``job_id``."""
    import redis
    from rq.job import Job

    name = Job.fetch(job_id, connection=redis.Redis.from_url(redis_url)).worker_name
    assert name, f"job {job_id} has no worker"
    return name


def kill_the_busy_one(client, redis_url: str, job_id: str, workers: dict) -> float:
    """Once the job runs, SIGKILL whichever of ``workers`` (name -> process) runs it; the time
    of the kill. Both are up before the job is queued, so the other one is there to take it
    over. The readiness is the job's own start (status and attempt written before any work),
    not its first progress write, which comes at most every 0.5 s."""
    poll(client, job_id, running)
    victim = workers[worker_of(redis_url, job_id)]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    return time.monotonic()


def test_sigkill_mid_job_is_taken_over_by_another_worker(model_path, redis_url, workdir, tmp_path):
    jobs = job_settings(redis_url, tmp_path / "store", queue="midas-jobs-kill")
    client = make_app(model_path, jobs).test_client()
    # 300 runs of the network: longer, on any machine, than the one poll between the job's
    # start and the kill; the taken-over attempt runs them all again.
    count = 300
    photo = small_photos(1, 32, 32)[0]
    archive = long_archive(count)
    env = worker_env(redis_url, model_path, jobs.directory, MIDAS_JOBS_QUEUE=jobs.queue)
    with worker("kill-a", env, workdir) as first, worker("kill-b", env, workdir) as second:
        job = submit(client, [("a.zip", archive)])
        killed = kill_the_busy_one(
            client, redis_url, job["id"], {"kill-a": first, "kill-b": second}
        )
        body = poll(client, job["id"], lambda b: b["attempts"] == 2)
        taken_over = time.monotonic() - killed
        body = poll(client, job["id"], finished, timeout=600)
    assert body["status"] == "finished" and body["attempts"] == 2, body
    assert body["summary"]["ok"] == count and body["progress"] == {"done": count, "total": count}
    assert taken_over <= jobs.takeover_bound_s + 5  # the bound, plus a poll on a busy machine
    outputs = result_zip(client, job["id"])
    assert outputs.read("7.jpg") == outputs.read(f"{count - 1}.jpg") == predict(client, photo)
    print(
        f"killed worker's job taken over after {taken_over:.1f} s (bound {jobs.takeover_bound_s} s)"
    )


def test_sigkill_without_retries_fails_the_job_with_a_reason(
    model_path, redis_url, workdir, tmp_path
):
    jobs = job_settings(redis_url, tmp_path / "store", queue="midas-jobs-kill0", retries=0)
    client = make_app(model_path, jobs).test_client()
    archive = long_archive(2000)  # never finishes before the kill; nothing waits for its end
    env = worker_env(
        redis_url, model_path, jobs.directory, MIDAS_JOBS_QUEUE=jobs.queue, MIDAS_JOBS_RETRIES="0"
    )
    with worker("kill0-a", env, workdir) as first, worker("kill0-b", env, workdir) as second:
        job = submit(client, [("a.zip", archive)])
        kill_the_busy_one(client, redis_url, job["id"], {"kill0-a": first, "kill0-b": second})
        body = poll(client, job["id"], finished)
    assert body["status"] == "failed" and "stopped (killed or lost)" in body["error"], body
    assert body["attempts"] == 1


def test_sigterm_lets_the_current_job_finish(model_path, redis_url, workdir, tmp_path):
    jobs = job_settings(redis_url, tmp_path / "store", queue="midas-jobs-term")
    client = make_app(model_path, jobs).test_client()
    archive = long_archive(300)  # outlasts the one poll between its start and the SIGTERM
    env = worker_env(redis_url, model_path, jobs.directory, MIDAS_JOBS_QUEUE=jobs.queue)
    with worker("terminated", env, workdir) as process:
        job = submit(client, [("a.zip", archive)])
        poll(client, job["id"], running)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=600) == 0
    body = client.get(f"/jobs/{job['id']}").get_json()
    assert body["status"] == "finished" and body["summary"]["ok"] == 300 and body["attempts"] == 1


def test_redis_restart_under_a_running_worker(model_path, workdir, tmp_path):
    from devtools.servers import free_port

    port = free_port()
    photo = small_photos(1)[0]
    first_redis = redis_server(workdir, port)
    url = first_redis.__enter__()
    jobs = job_settings(url, tmp_path / "store", QUEUE)
    client = make_app(model_path, jobs).test_client()
    env = worker_env(url, model_path, jobs.directory, MIDAS_JOBS_QUEUE=jobs.queue)
    with worker("survivor", env, workdir) as survivor:
        try:
            first = submit(client, [("a.jpg", photo)])
            assert poll(client, first["id"], finished)["status"] == "finished"
        finally:
            first_redis.__exit__(None, None, None)
        # Redis is gone: /jobs says so (503, Retry-After), /predict still serves.
        down = client.post("/jobs", data={"file": (io.BytesIO(photo), "a.jpg")})
        assert down.status_code == 503 and down.headers["Retry-After"] == "5"
        assert down.get_json()["error"]["code"] == "jobs_unavailable"
        assert client.get(f"/jobs/{first['id']}").status_code == 503
        assert predict(client, photo)[:2] == b"\xff\xd8"
        with redis_server(workdir, port):  # back, empty (no persistence here)
            again = submit(client, [("a.jpg", photo)])
            body = poll(client, again["id"], finished)
            assert body["status"] == "finished"
            assert survivor.poll() is None  # the same worker, reconnected


def test_video_round_trip(client, running_worker):
    import av
    import numpy as np

    clip = clip_bytes()
    job = submit(client, [("clip.mp4", clip)], output="side", scale="frame")
    body = poll(client, job["id"], finished, timeout=300)
    assert body["status"] == "finished", body
    assert body["progress"]["done"] == body["progress"]["total"] > 0
    response = client.get(f"/jobs/{job['id']}/result")
    assert response.status_code == 200 and response.mimetype == "video/mp4"
    with av.open(io.BytesIO(response.data)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(io.BytesIO(clip)) as container:
        sources = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == len(sources) == 12
    assert frames[0].shape == (64, 192, 3)  # photo | heatmap
    # Each frame's heatmap is /predict's for that frame, up to the video codec's loss.
    import cv2

    _, png = cv2.imencode(".png", cv2.cvtColor(sources[5], cv2.COLOR_RGB2BGR))
    expected = cv2.imdecode(
        np.frombuffer(predict(client, png.tobytes(), output="side", format="png"), np.uint8),
        cv2.IMREAD_COLOR,
    )[:, :, ::-1]
    got, want = frames[5][:, 96:].astype(float), expected[:, 96:].astype(float)
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.9
    ranged = client.get(f"/jobs/{job['id']}/result", headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206 and len(ranged.data) == 100  # a <video> can seek


def test_a_video_job_is_made_at_its_max_side(client, running_worker):
    """max_side=48 on a 96 x 64 clip: every frame of the result is 48 x 32, in both passes of
    the clip scale (24 steps for 12 frames)."""
    import av

    job = submit(client, [("clip.mp4", clip_bytes())], max_side="48")
    body = poll(client, job["id"], finished, timeout=300)
    assert body["status"] == "finished", body
    assert body["progress"] == {"done": 24, "total": 24}
    assert (body["summary"]["video"]["width"], body["summary"]["video"]["height"]) == (48, 32)
    response = client.get(f"/jobs/{job['id']}/result")
    with av.open(io.BytesIO(response.data)) as container:
        shapes = [f.to_ndarray(format="rgb24").shape for f in container.decode(video=0)]
    assert shapes == [(32, 48, 3)] * 12


def test_metrics_count_jobs_by_outcome(client, running_worker):
    from devtools.support import metric

    def scrape() -> str:
        response = client.get("/metrics")
        assert response.status_code == 200
        return response.get_data(as_text=True)

    before = scrape()
    photo = small_photos(1)[0]
    good = submit(client, [("a.jpg", photo)])
    bad = submit(client, [("b.jpg", photo[:100])])
    assert poll(client, good["id"], finished)["status"] == "finished"
    assert poll(client, bad["id"], finished)["status"] == "failed"
    after = scrape()
    finished_count = r'midas_job_seconds_count\{kind="photos"\}'
    failures = r'midas_job_failures_total\{reason="bad_input",retried="no"\}'
    assert metric(after, finished_count) == metric(before, finished_count) + 1
    assert metric(after, failures) == metric(before, failures) + 1
    assert metric(after, r'midas_jobs_queue_length\{state="queued"\}') == 0
    assert metric(after, "midas_jobs_redis_up") == 1
