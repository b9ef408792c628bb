"""Hostile uploads and parameters to POST /jobs, every file generated here (no binary fixtures).

A refusal at upload is a JSON 4xx ``{"error": {"code", "message"}, "request_id"}`` with a code
from the one error table, and no job folder is made; an input only the worker can judge ends
the job ``failed`` with a readable reason. After each, a good request still succeeds.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
from concurrent.futures import ThreadPoolExecutor
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
from midas_service.errors import ERROR_CODES
from midas_service.jobs.archive import ArchiveLimits, ArchiveRefused, open_stream

QUEUE = "midas-jobs-hostile"  # a worker runs these
IDLE = "midas-jobs-hostile-idle"  # no worker: jobs only wait (refusals happen before the queue)
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def client(model_path, redis_url, jobs_dir):
    return job_app(model_path, job_settings(redis_url, jobs_dir, queue=IDLE)).test_client()


@pytest.fixture(scope="module")
def running_worker(model_path, redis_url, jobs_dir, workdir):
    env = worker_env(redis_url, model_path, jobs_dir, MIDAS_JOBS_QUEUE=QUEUE)
    with worker("hostile", env, workdir) as process:
        yield process


@pytest.fixture(scope="module")
def run_client(model_path, redis_url, jobs_dir, running_worker):
    """Posts to the queue the module's worker runs."""
    return job_app(model_path, job_settings(redis_url, jobs_dir, QUEUE)).test_client()


PHOTO = small_photos(1)[0]


def post(client, files: list[tuple[str, bytes]], query=None, form=None, headers=None):
    data: dict = {"file": [(io.BytesIO(body), name) for name, body in files]}
    data.update(form or {})
    return client.post(
        "/jobs",
        data=data,
        query_string=query or {},
        headers=headers or {},
        content_type="multipart/form-data",
    )


def refused(response, status: int, code: str, *words: str) -> str:
    """Assert a JSON refusal with this status and code, whose message holds ``words``."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"]["code"] == code and ERROR_CODES[code].status == status
    assert body["request_id"]
    for word in words:
        assert word in body["error"]["message"], body["error"]["message"]
    return body["error"]["message"]


def still_accepts(client) -> None:
    """A good upload right after a refusal is queued (202)."""
    response = post(client, [("good.jpg", PHOTO)])
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json()["status"] == "queued"


def job_folders(directory: Path) -> set[str]:
    return {p.parent.name for p in directory.glob("*/job.json")} if directory.exists() else set()


# -- zips ----------------------------------------------------------------------------------


def folders_only_zip(count: int) -> bytes:
    """A zip of ``count`` folder entries and no file: its central directory is nearly all."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(count):
            archive.writestr(zipfile.ZipInfo(f"d{index}/"), b"")
    return buffer.getvalue()


def understating_count(count: int) -> bytes:
    """A zip of ``count`` tiny files whose end record says it holds 1 (zipfile reads all)."""
    data = bytearray(zip_bytes({f"{i}.jpg": b"x" for i in range(count)}))
    end = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 1, 1)
    return bytes(data)


def test_a_zip_of_100000_folders_is_refused_from_its_end_record(client, jobs_dir):
    archive = folders_only_zip(100_000)
    before = job_folders(jobs_dir)
    response = post(client, [("folders.zip", archive)])
    refused(response, 400, "bad_archive", "100000 entries", "MIDAS_JOBS_MAX_ENTRIES")
    assert job_folders(jobs_dir) == before
    still_accepts(client)


def test_the_entry_count_is_read_before_any_entry_is_parsed():
    """zipfile builds an object per central-directory record (about 49 MB for this 5 MB
    archive); the count comes from the end record first, so refusing costs next to nothing."""
    archive = io.BytesIO(folders_only_zip(100_000))
    limits = ArchiveLimits(max_entries=10_000, max_total_bytes=1 << 30, max_entry_bytes=1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(ArchiveRefused, match="100000 entries"):
            open_stream(archive, limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak


def test_an_end_record_that_understates_the_entries_is_caught_by_the_walk():
    archive = io.BytesIO(understating_count(12))
    limits = ArchiveLimits(max_entries=10, max_total_bytes=1 << 30, max_entry_bytes=1 << 20)
    with pytest.raises(ArchiveRefused, match="more than the limit of 10"):
        open_stream(archive, limits)


def lying_header(size: int) -> bytes:
    """One deflated entry of ``size`` zero bytes whose headers claim it holds 100."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.jpg", bytes(size))
    data = bytearray(buffer.getvalue())
    struct.pack_into("<I", data, data.find(b"PK\x03\x04") + 22, 100)
    struct.pack_into("<I", data, data.find(b"PK\x01\x02") + 24, 100)
    return bytes(data)


ARCHIVES_REFUSED = {
    "folders only": (zip_bytes({"a/": b"", "a/b/": b""}), "holds no files"),
    "empty zip": (zip_bytes({}), "holds no files"),
    "bomb by count": (
        zip_bytes({f"{i}.jpg": b"x" for i in range(12)}),
        "more than the limit of 10",
    ),
    "understated count": (understating_count(12), "more than the limit of 10"),
    "bomb by declared size": (zip_bytes({"big.jpg": bytes(2 * 1024 * 1024)}), "expands to"),
    "end record only": (b"PK\x05\x06" + bytes(18), "holds no files"),
    "truncated": (zip_bytes({"a.jpg": PHOTO})[:-30], "not a readable zip"),
    "broken directory": (
        zip_bytes({"a.jpg": PHOTO}).replace(b"PK\x01\x02", b"PK\x01\x09"),
        "bad central directory record",
    ),
}


@pytest.mark.parametrize("case", ARCHIVES_REFUSED)
def test_archives_refused_at_upload(model_path, redis_url, tmp_path, case):
    jobs = job_settings(
        redis_url, tmp_path / "store", queue=IDLE, max_entries=10, max_unzipped_mb=1.0
    )
    client = job_app(model_path, jobs).test_client()
    archive, words = ARCHIVES_REFUSED[case]
    refused(post(client, [("x.zip", archive)]), 400, "bad_archive", words)
    assert job_folders(jobs.directory) == set()
    still_accepts(client)


def test_the_entry_limit_holds_across_several_zips_and_photos(model_path, redis_url, tmp_path):
    client = job_app(
        model_path, job_settings(redis_url, tmp_path / "store", queue=IDLE, max_entries=10)
    ).test_client()
    six = zip_bytes({f"{i}.jpg": PHOTO for i in range(6)})
    refused(
        post(client, [("a.zip", six), ("b.zip", six)]),
        400,
        "bad_archive",
        "more than 10 entries together",
    )
    refused(
        post(client, [("a.zip", six), *((f"{i}.jpg", PHOTO) for i in range(5))]),
        400,
        "bad_archive",
        "more than 10 entries together",
    )
    assert post(client, [("a.zip", six), *((f"{i}.jpg", PHOTO) for i in range(4))]).status_code == (
        202
    )


def test_hostile_zip_entries_end_in_the_report_and_the_good_photo_is_processed(
    run_client, jobs_dir
):
    nested = zip_bytes({"inner.jpg": PHOTO})
    archive = zip_bytes(
        {
            "ok.jpg": PHOTO,
            "../slip.jpg": PHOTO,
            "/abs/olute.jpg": PHOTO,
            "dup.jpg": PHOTO,
            "dir/": b"",
            "nested.zip": nested,
            "notes.txt": b"plain text",
        },
        links={"link.jpg": "/etc/passwd"},
    )
    # A second entry of the same name (zipfile warns, the format allows it).
    with pytest.warns(UserWarning, match="Duplicate name"):
        buffer = io.BytesIO(archive)
        with zipfile.ZipFile(buffer, "a") as again:
            again.writestr("dup.jpg", PHOTO)
    response = post(run_client, [("hostile.zip", buffer.getvalue())])
    assert response.status_code == 202, response.get_data(as_text=True)
    job = response.get_json()
    body = poll(run_client, job["id"], finished)
    assert body["status"] == "finished", body
    assert (body["summary"]["ok"], body["summary"]["skipped"], body["summary"]["failed"]) == (
        3,
        3,
        2,
    )
    result = zipfile.ZipFile(io.BytesIO(run_client.get(f"/jobs/{job['id']}/result").data))
    assert sorted(result.namelist()) == ["dup-2.jpg", "dup.jpg", "ok.jpg", "report.json"]
    # A nested zip is not opened: it is one entry that is not a photo.
    report = {item["name"]: item for item in __import__("json").loads(result.read("report.json"))}
    assert report["nested.zip"]["code"] == "unsupported_media_type"
    assert report["../slip.jpg"]["error"] == "unsafe path: not read"
    assert report["link.jpg"]["error"] == "a symbolic link: not followed"
    folder = jobs_dir / job["id"]
    written = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert written == ["input/0.bin", "job.json", "report.json", "result.zip"]
    assert not list(jobs_dir.parent.rglob("slip.jpg")) and not list(jobs_dir.rglob("olute.jpg"))


def test_a_zip_bomb_by_ratio_is_read_no_further_than_its_limit(run_client):
    """A 20 MB entry of zeros (about 20 KB deflated) that claims 100 bytes: read up to the
    photo limit only, reported corrupt; the job fails as no photo could be processed."""
    response = post(run_client, [("bomb.zip", lying_header(20 * 1024 * 1024))])
    assert response.status_code == 202, response.get_data(as_text=True)
    body = poll(run_client, response.get_json()["id"], finished)
    assert body["status"] == "failed" and "no photo could be processed" in body["error"], body
    assert "bomb.jpg" in body["error"]
    good = post(run_client, [("good.jpg", PHOTO)])
    assert poll(run_client, good.get_json()["id"], finished)["status"] == "finished"


def test_only_non_images_fail_the_job_with_the_reason(run_client):
    archive = zip_bytes({"a.txt": b"text", "b.pdf": b"%PDF-1.4"})
    response = post(run_client, [("docs.zip", archive)])
    body = poll(run_client, response.get_json()["id"], finished)
    assert body["status"] == "failed" and "no photo could be processed (2 inputs)" in body["error"]


# -- form parts ----------------------------------------------------------------------------


def test_1001_photos_as_separate_parts_are_one_job(client):
    photos = [PHOTO] * 1001
    response = post(client, [(f"{i}.jpg", photo) for i, photo in enumerate(photos)])
    assert response.status_code == 202, response.get_data(as_text=True)
    body = client.get(response.get_json()["status_url"]).get_json()
    assert body["progress"] == {"done": 0, "total": 1001}
    assert client.delete(response.get_json()["status_url"]).status_code == 202


def test_more_parts_than_entries_is_a_413_naming_the_parts_limit(model_path, redis_url, tmp_path):
    client = job_app(
        model_path, job_settings(redis_url, tmp_path / "store", queue=IDLE, max_entries=20)
    ).test_client()
    message = refused(
        post(client, [(f"{i}.jpg", PHOTO) for i in range(21)]),
        413,
        "too_large",
        "more parts than a job takes",
        "20 files",
        "MIDAS_JOBS_MAX_ENTRIES",
    )
    assert "MB" not in message
    # Parts that are not files count too (Werkzeug's own limit, the options allowed for).
    fields = {f"x{i}": "1" for i in range(30)}
    refused(post(client, [("a.jpg", PHOTO)], form=fields), 413, "too_large", "more parts")
    assert job_folders(tmp_path / "store") == set()
    assert post(client, [(f"{i}.jpg", PHOTO) for i in range(20)]).status_code == 202


# -- parameters ----------------------------------------------------------------------------

CLIP = clip_bytes(frames=4)


@pytest.mark.parametrize(
    "value",
    [
        "²",
        "٣٢",
        "\uff16\uff14",  # fullwidth
        "1_000",
        "0x40",
        "64.0",
        "-64",
        "+64",
        "31",
        "4097",
        "99999",
        "9" * 5000,
        "nan",
        "inf",
        "1e3",
        " ",
        "64 64",
    ],
)
def test_max_side_must_be_ascii_digits_in_range(client, value):
    response = post(client, [("clip.mp4", CLIP)], query={"max_side": value})
    if value.strip() == "":
        assert response.status_code == 202  # empty means "not given"
        return
    refused(response, 400, "bad_parameter", "max_side", "from 32 to 4096")
    assert post(client, [("clip.mp4", CLIP)], query={"max_side": "64"}).status_code == 202


@pytest.mark.parametrize(
    ("query", "form"),
    [
        ([("max_side", "64"), ("max_side", "99999")], {}),
        ([("max_side", "64")], {"max_side": "64"}),
        ([("output", "side"), ("output", "heatmap")], {}),
        ([("scale", "clip"), ("scale", "frame")], {}),
        ([("colormap", "magma"), ("colormap", "magma")], {}),
    ],
)
def test_repeated_parameters_are_refused_as_for_predict(client, query, form):
    from werkzeug.datastructures import MultiDict

    response = post(client, [("clip.mp4", CLIP)], query=MultiDict(query), form=form)
    refused(response, 400, "bad_parameter", "times; send it once")
    still_accepts(client)


@pytest.mark.parametrize(
    ("files", "query", "words"),
    [
        ([("a.jpg", PHOTO)], {"max_side": "64"}, "apply to a video"),
        ([("a.jpg", PHOTO)], {"scale": "clip"}, "apply to a video"),
        ([("c.mp4", CLIP)], {"format": "png"}, "format applies to photos"),
        ([("c.mp4", CLIP)], {"output": "mesh"}, "output must be one of"),
        ([("c.mp4", CLIP)], {"output": "depth", "scale": "frame"}, "use scale=clip"),
        ([("c.mp4", CLIP)], {"speed": "11"}, "unknown parameter speed"),
        ([("c.mp4", CLIP), ("a.jpg", PHOTO)], {}, "a video is a job of its own"),
    ],
)
def test_parameters_that_do_not_fit_the_input(client, files, query, words):
    refused(post(client, files, query=query), 400, "bad_parameter", words)
    still_accepts(client)


# -- videos (judged by the worker) ---------------------------------------------------------


def encode_clip(path: Path, frames: int, width: int, height: int, **options) -> Path:
    """A clip written with PyAV: ``codec``, ``pix_fmt``, ``rate``, ``container`` options."""
    import av
    import numpy as np

    codec = options.get("codec", "libx264")
    with av.open(str(path), "w", format=options.get("container")) as out:
        stream = out.add_stream(codec, rate=options.get("rate", 12))
        stream.width, stream.height = width, height
        stream.pix_fmt = options.get("pix_fmt", "yuv420p")
        if "time_base" in options:
            stream.time_base = options["time_base"]
        for index in range(frames):
            picture = np.full((height, width, 3), (index * 20) % 255, np.uint8)
            picture[: height // 2, : width // 2] = 255 - picture[0, 0]
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            if "pts_step" in options:
                frame.pts = index * options["pts_step"]
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def video_cases(folder: Path) -> dict[str, tuple[bytes, str | None, dict]]:
    """name -> (file bytes, words of the failure or None for success, query)."""
    from fractions import Fraction

    from devtools.video_clips import make_audio_only, make_clip, make_empty_video

    small = encode_clip(folder / "small.mp4", 6, 64, 48)
    clip = small.read_bytes()
    cases: dict[str, tuple[bytes, str | None, dict]] = {
        "corrupt": (clip[: len(clip) // 2], "", {}),
        "garbage": (b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8, "", {}),
        "audio only": (make_audio_only(folder / "audio.m4a").read_bytes(), "", {}),
        "zero frames": (make_empty_video(folder / "empty.mp4").read_bytes(), "", {}),
        "huge resolution": (
            encode_clip(folder / "wide.mp4", 1, 4112, 16).read_bytes(),
            "MIDAS_VIDEO_MAX_SIDE",
            {},
        ),
        "absurd timestamps": (
            encode_clip(
                folder / "far.mkv", 3, 64, 48, container="matroska", pts_step=10**9
            ).read_bytes(),
            "",
            {"scale": "frame"},
        ),
        "a frame every 1000 s": (
            encode_clip(
                folder / "slow.mkv",
                3,
                64,
                48,
                container="matroska",
                codec="ffv1",
                rate=Fraction(1, 1000),
            ).read_bytes(),
            "MIDAS_VIDEO_MAX_SECONDS",
            {},
        ),
        "100,000 fps": (
            encode_clip(
                folder / "fast.mkv", 4, 64, 48, container="matroska", codec="ffv1", rate=100_000
            ).read_bytes(),
            None,
            {"scale": "frame"},
        ),
        "10-bit": (
            encode_clip(
                folder / "ten.mkv",
                4,
                64,
                48,
                container="matroska",
                codec="ffv1",
                pix_fmt="yuv420p10le",
            ).read_bytes(),
            None,
            {"scale": "frame"},
        ),
        "rotated": (
            make_clip(folder / "rot.mp4", 6, 64, 48, rotation=90).read_bytes(),
            None,
            {"scale": "frame"},
        ),
        "hls playlist": (
            b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
            "",
            {},
        ),
        "dash manifest": (
            b'<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011">'
            b"<BaseURL>file:///etc/</BaseURL></MPD>",
            "",
            {},
        ),
        "ffconcat list": (b"ffconcat version 1.0\nfile /etc/passwd\nfile input/0.bin\n", "", {}),
    }
    return cases


def test_hostile_videos_fail_their_job_with_a_reason_and_odd_ones_work(
    run_client, jobs_dir, tmp_path
):
    cases = video_cases(tmp_path)
    jobs = {}
    for name, (data, _, query) in cases.items():
        response = post(run_client, [(f"{name}.bin", data)], query=query)
        assert response.status_code == 202, (name, response.get_data(as_text=True))
        jobs[name] = response.get_json()["id"]
    for name, job_id in jobs.items():
        body = poll(run_client, job_id, finished, timeout=300)
        words = cases[name][1]
        if words is None:
            assert body["status"] == "finished", (name, body)
            continue
        assert body["status"] == "failed", (name, body)
        assert body["error"] and "internal error" not in body["error"], (name, body)
        assert words in body["error"], (name, body)
        # A playlist fetches nothing and reads no local file: the job never got past "not a
        # video", and its folder holds only what the web wrote.
        folder = jobs_dir / job_id
        assert {p.name for p in folder.iterdir()} <= {"input", "job.json", "report.json"}
    rotated_job = jobs["rotated"]
    video = run_client.get(f"/jobs/{rotated_job}/result")
    import av

    with av.open(io.BytesIO(video.data)) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == (48, 64)  # upright: turned by the rotation
    again = post(run_client, [("clip.mp4", clip_bytes(frames=4))], query={"scale": "frame"})
    assert poll(run_client, again.get_json()["id"], finished)["status"] == "finished"


def test_a_video_longer_than_the_limits_fails_with_the_limit_named(
    model_path, redis_url, workdir, tmp_path
):
    jobs = job_settings(redis_url, tmp_path / "store", queue="midas-jobs-hostile-short")
    client = job_app(model_path, jobs).test_client()
    env = worker_env(
        redis_url,
        model_path,
        jobs.directory,
        MIDAS_JOBS_QUEUE=jobs.queue,
        MIDAS_VIDEO_MAX_FRAMES="5",
        MIDAS_VIDEO_MAX_SECONDS="2",
    )
    many = encode_clip(tmp_path / "many.mp4", 8, 64, 48).read_bytes()
    slow = encode_clip(tmp_path / "slow.mkv", 3, 64, 48, container="matroska", rate=1)
    with worker("short", env, workdir):
        long_job = post(client, [("many.mp4", many)]).get_json()["id"]
        slow_job = post(client, [("slow.mkv", slow.read_bytes())]).get_json()["id"]
        good = post(client, [("ok.mp4", clip_bytes(frames=4))], query={"scale": "frame"})
        assert "MIDAS_VIDEO_MAX_FRAMES" in poll(client, long_job, finished)["error"]
        assert "MIDAS_VIDEO_MAX_SECONDS" in poll(client, slow_job, finished)["error"]
        assert poll(client, good.get_json()["id"], finished)["status"] == "finished"


# -- quota ---------------------------------------------------------------------------------


def chunked_post(client, files: list[tuple[str, bytes]]):
    """POST /jobs with a chunked body: no Content-Length, as a streaming client sends it."""
    from werkzeug.test import EnvironBuilder

    multipart = EnvironBuilder(
        method="POST", data={"file": [(io.BytesIO(data), name) for name, data in files]}
    ).get_environ()
    body = multipart["wsgi.input"].read()
    return client.post(
        "/jobs",
        input_stream=io.BytesIO(body),
        content_type=multipart["CONTENT_TYPE"],
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_a_chunked_upload_is_held_to_the_quota(model_path, redis_url, tmp_path):
    jobs = job_settings(redis_url, tmp_path / "store", queue=IDLE, max_store_mb=0.1)
    client = job_app(model_path, jobs).test_client()
    big = PHOTO + bytes(120_000)  # a JPEG by its first bytes, 120 KB: over the 100 KB quota
    response = chunked_post(client, [("big.jpg", big)])
    refused(response, 507, "quota_exceeded", "MIDAS_JOBS_MAX_MB")
    assert job_folders(jobs.directory) == set()
    assert chunked_post(client, [("small.jpg", PHOTO)]).status_code == 202


def test_parallel_uploads_do_not_overshoot_the_quota(model_path, redis_url, tmp_path):
    jobs = job_settings(redis_url, tmp_path / "store", queue=IDLE, max_store_mb=10)
    app = job_app(model_path, jobs)
    # About 3 MB each: three fit in 10 MB, not four. Large enough that reading one upload
    # takes a while, during which the others run their checks.
    upload = PHOTO + bytes(3 * 1024 * 1024)

    def send(index: int) -> int:
        return post(app.test_client(), [(f"{index}.jpg", upload)]).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(8)))
    accepted = statuses.count(202)
    assert sorted(set(statuses)) == [202, 507] and accepted == 3, statuses
    from midas_service.jobs.store import folder_size

    assert folder_size(jobs.directory) <= jobs.max_store_bytes


def test_a_chunked_body_past_the_upload_limit_is_a_413_naming_it(model_path, redis_url, tmp_path):
    jobs = job_settings(redis_url, tmp_path / "store", queue=IDLE, max_upload_mb=0.1)
    client = job_app(model_path, jobs).test_client()
    response = chunked_post(client, [("big.jpg", PHOTO + bytes(300_000))])
    refused(response, 413, "too_large", "0.1 MB limit of /jobs", "MIDAS_JOBS_MAX_UPLOAD_MB")
    assert job_folders(jobs.directory) == set()
    still_accepts(client)


@pytest.mark.parametrize(
    ("frame_count", "duration_s", "rate", "most"),
    [
        (50, 2.0, 30, 50),  # declared frames
        (None, 2.0, 30, 61),  # declared duration at the frame rate
        (None, None, 30, 20_000),  # neither: what MIDAS_VIDEO_MAX_FRAMES lets through
        (None, None, 2, 1_801),  # ... or MIDAS_VIDEO_MAX_SECONDS at the frame rate
        (None, 10.0, 10**6, 20_000),  # an absurd rate is held to the frame limit
    ],
)
def test_the_clip_spill_is_sized_even_without_a_declared_frame_count(
    frame_count, duration_s, rate, most
):
    from fractions import Fraction

    from midas_service.config import VideoLimits
    from midas_service.video.convert import most_frames
    from midas_service.video.reader import VideoInfo

    info = VideoInfo(
        width=64,
        height=48,
        source_width=64,
        source_height=48,
        rotation=0,
        time_base=Fraction(1, 1000),
        rate=Fraction(rate),
        frame_count=frame_count,
        duration_s=duration_s,
        start_pts=0,
        end_pts=None,
        audio_codec=None,
        format_name="matroska",
    )
    assert most_frames(info, VideoLimits(max_frames=20_000, max_seconds=900)) == most


def test_many_parts_do_not_stay_in_the_web_workers_memory(model_path, redis_url, tmp_path):
    """40 parts of 200 KB: only the first 16 may be spooled in memory, the rest go to disk."""
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    app = job_app(model_path, job_settings(redis_url, tmp_path / "store", queue=IDLE))
    part = PHOTO + bytes(200_000)
    environ = EnvironBuilder(
        "/jobs",
        method="POST",
        data={"file": [(io.BytesIO(part), f"{i}.jpg") for i in range(40)]},
    ).get_environ()
    tracemalloc.start()
    try:
        body, status, _ = run_wsgi_app(app, environ, buffered=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status.startswith("202"), b"".join(body)
    assert peak < 16 * len(part) + 2_000_000, peak  # 40 parts in memory would be 8 MB
