"""Real processes: Gunicorn (2 workers) serving a random-weights export, real nginx in front."""

from __future__ import annotations

import io
import json
import os
import re
import signal
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from devtools.servers import gunicorn, nginx, wait_for
from devtools.support import metric, post_jpeg
from midas_service.inference.engines import BACKENDS

COLORMAPS = ("inferno", "magma", "viridis", "turbo", "plasma", "gray")


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request, model_path, tmp_path_factory):
    """Gunicorn (2 workers) and nginx, once per backend (TorchScript is the default)."""
    workdir = tmp_path_factory.mktemp("stack")
    with ExitStack() as stack:
        app_url, process = stack.enter_context(
            # No result cache: these tests watch the pipeline run (test_cache.py covers the cache)
            gunicorn(
                model_path, workdir, workers=2, MIDAS_BACKEND=request.param, MIDAS_CACHE_MB="0"
            )
        )
        proxy_url = stack.enter_context(nginx(app_url, workdir, max_upload_mb="10"))
        yield {
            "gunicorn": app_url,
            "nginx": proxy_url,
            "process": process,
            "backend": request.param,
        }


def picture(response: requests.Response) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize("output", ["heatmap", "side"])
@pytest.mark.parametrize("fmt", ["jpeg", "png"])
@pytest.mark.parametrize("colormap", COLORMAPS)
def test_pictures_through_nginx(stack, jpeg_640x480, output, fmt, colormap):
    response = post_jpeg(stack["nginx"], jpeg_640x480, output=output, format=fmt, colormap=colormap)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == f"image/{fmt}"
    width = 1280 if output == "side" else 640
    assert picture(response).shape == (480, width, 3)


@pytest.mark.parametrize("target", ["gunicorn", "nginx"])
def test_depth_formats(stack, jpeg_640x480, target):
    url = stack[target]
    npy = post_jpeg(url, jpeg_640x480, output="depth")
    assert npy.headers["Content-Type"] == "application/x-npy"
    depth = np.load(io.BytesIO(npy.content))
    assert depth.shape == (480, 640) and depth.dtype == np.float32
    png16 = picture(post_jpeg(url, jpeg_640x480, output="depth", format="png16"))
    assert png16.shape == (480, 640) and png16.dtype == np.uint16
    pfm = post_jpeg(url, jpeg_640x480, output="depth", format="pfm")
    assert pfm.content.startswith(b"Pf\n640 480\n")
    document = post_jpeg(url, jpeg_640x480, output="depth", format="json").json()
    assert np.allclose(np.array(document["depth"], dtype=np.float32), depth)
    assert document["min"] == pytest.approx(float(depth.min()))


def test_workers_run_the_backend_with_its_threading_setup(stack):
    """TorchScript workers get Intel OpenMP with a 1 ms block time (as serve.sh and the image
    start them); ONNX Runtime and OpenVINO workers never load torch at all."""
    info = requests.get(f"{stack['gunicorn']}/readyz", timeout=5).json()
    maps = Path(f"/proc/{info['pid']}/maps").read_text()
    if info["backend"] == "torchscript":
        assert info["openmp"] == "intel (KMP_BLOCKTIME=1)"
        assert "libiomp5.so" in maps
    else:
        assert info["backend"] in ("onnxruntime", "openvino")
        assert "libtorch" not in maps


def test_request_id_and_timing_pass_through_nginx(stack, jpeg_640x480):
    given = requests.post(
        f"{stack['nginx']}/predict",
        data=jpeg_640x480,
        timeout=30,
        headers={"Content-Type": "image/jpeg", "X-Request-ID": "client-7"},
    )
    assert given.headers["X-Request-ID"] == "client-7"
    assert re.search(
        r"decode;dur=[\d.]+.*infer;dur=[\d.]+.*encode;dur=", given.headers["Server-Timing"]
    )
    generated = post_jpeg(stack["nginx"], jpeg_640x480)
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["X-Request-ID"])


def test_static_files_come_from_nginx(stack):
    response = requests.get(f"{stack['nginx']}/static/style.css", timeout=5)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/css")
    assert "Expires" in response.headers or "Cache-Control" in response.headers


@pytest.mark.parametrize("target", ["gunicorn", "nginx"])
def test_errors_are_json_and_the_next_request_succeeds(stack, jpeg_640x480, target):
    url = stack[target]
    cases = [
        (post_jpeg(url, jpeg_640x480, output="hologram"), 400),
        (post_jpeg(url, b"\xff\xd8\xff\xe0 truncated"), 400),
        (requests.get(f"{url}/nothing-here", timeout=5), 404),
        (requests.put(f"{url}/predict", data=b"x", timeout=5), 405),
        (
            requests.post(
                f"{url}/predict", data=b"hello", timeout=5, headers={"Content-Type": "text/plain"}
            ),
            415,
        ),
        (post_jpeg(url, b"\xff\xd8\xff" + bytes(10 * 1024 * 1024 + 10)), 413),
    ]
    for response, status in cases:
        assert response.status_code == status
        body = response.json()
        assert body["error"]["code"] and body["error"]["message"] and body["request_id"]
        assert post_jpeg(url, jpeg_640x480).status_code == 200


def test_nginx_413_is_json_before_the_app_sees_it(stack):
    response = post_jpeg(stack["nginx"], b"\xff\xd8\xff" + bytes(12 * 1024 * 1024))
    assert response.status_code == 413
    body = response.json()
    assert body["error"]["code"] == "too_large" and "10 MB" in body["error"]["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def _predict_counts(metrics_text: str) -> float:
    pattern = r'midas_requests_total\{[^}]*endpoint="/predict"[^}]*status="200"[^}]*\}'
    return metric(metrics_text, pattern)


def test_metrics_add_up_across_workers(stack, jpeg_640x480):
    url = stack["gunicorn"]
    before = _predict_counts(requests.get(f"{url}/metrics", timeout=5).text)
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: post_jpeg(url, jpeg_640x480), range(24)))
    assert [r.status_code for r in responses] == [200] * 24
    answered = [int(r.headers["X-Worker-PID"]) for r in responses]
    # The counted /predict calls were split between both workers (not only the probes).
    assert len(set(answered)) == 2, answered
    assert requests.get(f"{url}/readyz", timeout=5).json()["pid"] in answered  # real worker pids
    text = requests.get(f"{url}/metrics", timeout=5).text
    assert _predict_counts(text) - before == 24
    assert "midas_stage_seconds_bucket" in text and "midas_in_flight_requests" in text
    assert 'stage="infer"' in text


def threads_used(response: requests.Response) -> int:
    return int(re.search(r"threads;desc=(\d+)", response.headers["Server-Timing"]).group(1))


def test_a_lone_request_gets_every_thread_and_concurrent_ones_share_the_cores(stack, jpeg_640x480):
    url = stack["gunicorn"]
    ready = requests.get(f"{url}/readyz", timeout=5).json()
    counts = ready["thread_counts"]
    alone = [post_jpeg(url, jpeg_640x480, output="depth") for _ in range(3)]
    assert [threads_used(r) for r in alone] == [counts[0]] * 3
    before = requests.get(f"{url}/metrics", timeout=5).text
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda _: post_jpeg(url, jpeg_640x480, output="depth"), range(16)))
    assert [r.status_code for r in together] == [200] * 16
    expected = np.load(io.BytesIO(alone[0].content))
    span = float(expected.max() - expected.min())
    if ready["share_cores"] == "turns":  # OpenVINO (auto): one engine, one inference at a time
        assert counts == [counts[0]] and stack["backend"] == "openvino"
        assert [threads_used(r) for r in together] == [counts[0]] * 16
        assert all("turn;desc=wait;dur=" in r.headers["Server-Timing"] for r in together)
        for response in together:
            got = np.load(io.BytesIO(response.content))
            assert float(np.abs(got - expected).max()) <= 1e-5 * span
        return
    assert ready["share_cores"] == "split" and stack["backend"] != "openvino"
    assert counts == sorted(counts, reverse=True) and counts[-1] == 1
    shared = [r for r in together if threads_used(r) < counts[0]]
    # Two workers computing at once: most requests overlap another one and run on their share.
    assert len(shared) >= 4, [threads_used(r) for r in together]
    pattern = r'midas_inferences_total\{threads="1"\}'
    text = requests.get(f"{url}/metrics", timeout=5).text
    counted = metric(text, pattern) - metric(before, pattern)
    assert counted == sum(1 for r in together if threads_used(r) == 1)
    # Fewer threads, same depth map.
    for response in shared:
        got = np.load(io.BytesIO(response.content))
        assert float(np.abs(got - expected).max()) <= 1e-5 * span


def test_killed_worker_does_not_take_its_neighbour_down(stack, jpeg_640x480):
    url = stack["gunicorn"]
    victim = requests.get(f"{url}/readyz", timeout=5).json()["pid"]
    os.kill(victim, signal.SIGKILL)
    for _ in range(6):
        assert post_jpeg(url, jpeg_640x480).status_code == 200
    wait_for(f"{url}/readyz", stack["process"])
    assert stack["process"].poll() is None


def test_readyz_is_503_until_warm_then_200(model_path, tmp_path, jpeg_640x480):
    # Many warm-up runs keep the window before "ready" long enough to observe.
    with gunicorn(
        model_path, tmp_path, workers=1, wait=False, MIDAS_WARMUP_RUNS="150", MIDAS_READY_WAIT_S="0"
    ) as (
        url,
        process,
    ):
        wait_for(f"{url}/healthz", process)
        early = requests.get(f"{url}/readyz", timeout=5)
        assert early.status_code == 503 and early.json()["ready"] is False
        busy = post_jpeg(url, jpeg_640x480)
        assert busy.status_code == 503 and busy.json()["error"]["code"] == "not_ready"
        wait_for(f"{url}/readyz", process, timeout=300)  # 150 runs: minutes on a busy machine
        ready = requests.get(f"{url}/readyz", timeout=5).json()
        assert ready["ready"] is True and ready["metadata"]["weights_sha256"]
        assert post_jpeg(url, jpeg_640x480).status_code == 200
        json.dumps(ready)
