"""The result cache: LRU and key rules, a real redis-server (also going down and coming back),
and the service answering hits with exactly the bytes of the miss."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests
from prometheus_client import REGISTRY

from devtools.servers import gunicorn, redis_server
from midas_service.config import Settings
from midas_service.web import create_app
from midas_service.web.cache import (
    CacheUnavailable,
    Entry,
    MemoryStore,
    RedisStore,
    model_identity,
    result_key,
)

OPTIONS = {"output": "heatmap", "format": "jpeg", "colormap": "inferno"}


def cache_count(result: str) -> float:
    return REGISTRY.get_sample_value("midas_cache_total", {"result": result}) or 0.0


def cache_note(response) -> str:
    """The ``desc`` of the cache entry in Server-Timing: hit, miss or error."""
    for part in response.headers["Server-Timing"].split(","):
        name, *params = [piece.strip() for piece in part.split(";")]
        if name == "cache":
            return dict(param.split("=", 1) for param in params)["desc"]
    raise AssertionError(f"no cache entry in {response.headers['Server-Timing']!r}")


def make_app(model_path: Path, **settings: object):
    app = create_app(
        Settings(model_path=model_path, allow_untrained=True, warmup_runs=1, **settings),
        load_model=False,
    )
    app.extensions["midas_runtime"].load()
    return app


# The store and key rules -------------------------------------------------------------------


def test_lru_is_bounded_in_bytes_and_evicts_the_least_recently_used():
    store = MemoryStore(max_bytes=300)
    for name in "abc":
        store.put(name, Entry(bytes(90), "image/png"))  # 99 bytes each
    assert store.used_bytes == 297
    assert store.get("a") is not None  # a is now the most recent
    store.put("d", Entry(bytes(90), "image/png"))
    assert store.get("b") is None, "b was the least recently used"
    assert [store.get(name) is not None for name in "acd"] == [True, True, True]
    assert store.used_bytes == 297 and len(store) == 3
    store.put("huge", Entry(bytes(400), "image/png"))  # larger than the budget: not stored
    assert store.get("huge") is None and len(store) == 3


def test_key_changes_with_the_image_the_model_and_every_option():
    base = result_key(b"photo", "weights-a", OPTIONS)
    assert base == result_key(b"photo", "weights-a", dict(reversed(OPTIONS.items())))
    variants = [
        result_key(b"photo2", "weights-a", OPTIONS),
        result_key(b"photo", "weights-b", OPTIONS),
        *(result_key(b"photo", "weights-a", {**OPTIONS, name: "x"}) for name in OPTIONS),
    ]
    assert base not in variants and len(set(variants)) == len(variants)


def test_model_identity_is_the_weights_hash_or_else_all_metadata():
    assert model_identity({"weights_sha256": "ab" * 32, "exported_at": "1"}) == "ab" * 32
    first = model_identity({"weights_sha256": "", "weights_source": "random (seed 1)"})
    second = model_identity({"weights_sha256": "", "weights_source": "random (seed 2)"})
    assert first != second and first.startswith("metadata-")


# A real redis-server -------------------------------------------------------------------------


def test_redis_store_round_trip_with_prefix_and_ttl(tmp_path):
    import redis

    with redis_server(tmp_path) as url:
        store = RedisStore(url, prefix="test:", ttl_s=60)
        assert store.get("k") is None
        store.put("k", Entry(b"\x00\xffbody\nwith newline", "image/x-portable-floatmap"))
        assert store.get("k") == Entry(b"\x00\xffbody\nwith newline", "image/x-portable-floatmap")
        raw = redis.Redis.from_url(url)
        assert raw.keys("*") == [b"test:k"]
        assert 0 < raw.ttl("test:k") <= 60


def test_redis_going_down_is_logged_once_and_recovers_on_the_same_port(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="midas_service.web.cache")
    with redis_server(tmp_path) as url:
        store = RedisStore(url, timeout_s=0.2, retry_s=0.2)
        store.put("k", Entry(b"v", "image/png"))
        port = int(url.rsplit(":", 1)[1].split("/")[0])
    for _ in range(5):  # down: every call fails fast, one warning in all
        with pytest.raises(CacheUnavailable):
            store.get("k")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
    with redis_server(tmp_path, port=port):  # back, empty (no persistence)
        deadline = time.monotonic() + 10
        while True:
            try:
                assert store.get("k") is None
                break
            except CacheUnavailable:
                assert time.monotonic() < deadline, "the store never reconnected"
                time.sleep(0.05)
        store.put("k", Entry(b"again", "image/png"))
        assert store.get("k") == Entry(b"again", "image/png")
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


# The service ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cached_client(model_path):
    return make_app(model_path, cache_mb=16).test_client()


@pytest.mark.parametrize(
    "query",
    ["", "?format=png&colormap=magma", "?output=side", "?output=depth", "?output=depth&format=pfm"],
)
def test_a_hit_is_the_exact_answer_of_the_miss_without_running_the_model(
    cached_client, jpeg_640x480, monkeypatch, query
):
    image = jpeg_640x480  # each query is a new key: the first request of each is a miss
    hits, misses = cache_count("hit"), cache_count("miss")
    miss = cached_client.post(f"/predict{query}", data=image, content_type="image/jpeg")
    assert miss.status_code == 200 and cache_note(miss) == "miss"
    estimator = cached_client.application.extensions["midas_runtime"].estimator

    def no_model(*args, **kwargs):
        raise AssertionError("a hit must not run the model")

    monkeypatch.setattr(estimator, "predict", no_model)
    hit = cached_client.post(f"/predict{query}", data=image, content_type="image/jpeg")
    assert hit.status_code == 200 and cache_note(hit) == "hit"
    assert hit.data == miss.data and len(hit.data) > 1000
    assert hit.headers["Content-Type"] == miss.headers["Content-Type"]
    assert hit.headers.get("Content-Disposition") == miss.headers.get("Content-Disposition")
    assert (cache_count("hit") - hits, cache_count("miss") - misses) == (1, 1)
    names = [part.split(";")[0].strip() for part in hit.headers["Server-Timing"].split(",")]
    assert names == ["cache", "total"]


def test_the_hit_is_the_picture_a_fresh_computation_gives(cached_client, model_path, photo_dir):
    png = (photo_dir / "coffee.png").read_bytes()
    cached_client.post("/predict?format=png", data=png, content_type="image/png")
    hit = cached_client.post("/predict?format=png", data=png, content_type="image/png")
    assert cache_note(hit) == "hit"
    uncached = make_app(model_path, cache_mb=0).test_client()
    fresh = uncached.post("/predict?format=png", data=png, content_type="image/png")
    assert "cache" not in fresh.headers["Server-Timing"]
    picture = cv2.imdecode(np.frombuffer(hit.data, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (400, 600, 3) and picture.std() > 10  # a real heatmap, not blank
    np.testing.assert_array_equal(picture, cv2.imdecode(np.frombuffer(fresh.data, np.uint8), 1))


def test_errors_are_not_cached(cached_client, jpeg_640x480):
    broken = jpeg_640x480[:2000]  # a truncated JPEG
    misses, hits = cache_count("miss"), cache_count("hit")
    for _ in range(2):
        response = cached_client.post("/predict", data=broken, content_type="image/jpeg")
        assert response.status_code == 400 and cache_note(response) == "miss"
    assert (cache_count("miss") - misses, cache_count("hit") - hits) == (2, 0)


def test_the_service_serves_uncached_while_redis_is_down_and_uses_it_again(
    model_path, tmp_path, jpeg_640x480, caplog
):
    caplog.set_level(logging.INFO, logger="midas_service.web.cache")
    with redis_server(tmp_path) as url:
        client = make_app(model_path, redis_url=url, redis_timeout_s=0.2).test_client()
        client.application.extensions["midas_cache"].retry_s = 0.2
        first = client.post("/predict", data=jpeg_640x480, content_type="image/jpeg")
        second = client.post("/predict", data=jpeg_640x480, content_type="image/jpeg")
        assert [cache_note(first), cache_note(second)] == ["miss", "hit"]
        assert second.data == first.data
        port = int(url.rsplit(":", 1)[1].split("/")[0])
    errors = cache_count("error")
    for _ in range(3):
        down = client.post("/predict", data=jpeg_640x480, content_type="image/jpeg")
        assert down.status_code == 200 and cache_note(down) == "error"
        assert down.data == first.data
    assert cache_count("error") - errors == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "one log line per outage, not one per request"
    with redis_server(tmp_path, port=port):
        deadline = time.monotonic() + 10
        while True:
            response = client.post("/predict", data=jpeg_640x480, content_type="image/jpeg")
            assert response.status_code == 200
            if cache_note(response) != "error":
                break
            assert time.monotonic() < deadline, "the service never used Redis again"
        again = client.post("/predict", data=jpeg_640x480, content_type="image/jpeg")
        assert cache_note(again) == "hit" and again.data == first.data


def test_gunicorn_workers_share_redis_and_metrics_add_up(model_path, tmp_path, jpeg_640x480):
    with (
        redis_server(tmp_path) as url,
        gunicorn(model_path, tmp_path, workers=2, REDIS_URL=url) as (base, _),
    ):
        notes = []
        for _ in range(6):
            response = requests.post(
                f"{base}/predict", data=jpeg_640x480, headers={"Content-Type": "image/jpeg"}
            )
            assert response.status_code == 200
            notes.append(cache_note(response))
        assert notes == ["miss"] + ["hit"] * 5
        text = requests.get(f"{base}/metrics").text
        assert 'midas_cache_total{result="hit"} 5.0' in text
        assert 'midas_cache_total{result="miss"} 1.0' in text


def test_another_colormap_is_a_miss_with_its_own_colours(cached_client, model_path, photo_dir):
    png = (photo_dir / "chelsea.png").read_bytes()
    inferno = cached_client.post("/predict?format=png", data=png, content_type="image/png")
    magma = cached_client.post(
        "/predict?format=png&colormap=magma", data=png, content_type="image/png"
    )
    assert cache_note(magma) == "miss", "a magma request must not get the inferno entry"
    fresh = make_app(model_path, cache_mb=0).test_client()
    expected = fresh.post("/predict?format=png&colormap=magma", data=png, content_type="image/png")

    def pixels(response) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(response.data, np.uint8), cv2.IMREAD_COLOR).astype(int)

    # Another process's thread count may move a rounding tie by a level or two, nothing more.
    assert np.abs(pixels(magma) - pixels(expected)).max() <= 2
    assert np.abs(pixels(magma) - pixels(inferno)).mean() > 10  # magma's colours, not inferno's


def test_backends_and_rendering_versions_never_share_an_entry(
    model_path, jpeg_640x480, monkeypatch
):
    """TorchScript and ONNX answers differ in a few heatmap levels; a release that renders
    otherwise must not serve the bytes an older one left in Redis."""
    torchscript = make_app(model_path, cache_mb=16)
    onnx = make_app(model_path, cache_mb=16, backend="onnxruntime")
    onnx.extensions["midas_cache"] = torchscript.extensions["midas_cache"]  # one shared store

    def post(app):
        return app.test_client().post("/predict", data=jpeg_640x480, content_type="image/jpeg")

    assert cache_note(post(torchscript)) == "miss"
    assert cache_note(post(onnx)) == "miss"
    assert [cache_note(post(app)) for app in (torchscript, onnx)] == ["hit", "hit"]
    monkeypatch.setattr("midas_service.web.cache.RENDER_VERSION", 10**6)
    assert cache_note(post(torchscript)) == "miss"


def glb_extras(body: bytes) -> dict:
    """``asset.extras`` of a GLB: the fov, near, far and grid it was made with."""
    import json
    import struct

    length, _ = struct.unpack_from("<II", body, 12)
    return json.loads(body[20 : 20 + length])["asset"]["extras"]


def test_every_3d_option_is_part_of_the_key(cached_client, jpeg_640x480):
    """A mesh with another camera, other planes or another grid is another answer: each is a
    miss, and each body holds its own options (a key of output, format and colormap alone
    would answer fov=90 with the fov=60 mesh)."""
    base = {"output": "mesh", "fov": "60", "near": "1", "far": "10", "grid_side": "16"}

    def mesh(**changes: str):
        query = base | changes
        response = cached_client.post(
            "/predict", query_string=query, data=jpeg_640x480, content_type="image/jpeg"
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return response

    first = mesh()
    assert cache_note(mesh()) == "hit"
    assert glb_extras(first.data)["fov_deg"] == pytest.approx(60)
    variants = {"fov": "90", "near": "2", "far": "20", "grid_side": "24"}
    for name, value in variants.items():
        response = mesh(**{name: value})
        assert cache_note(response) == "miss", f"{name}={value} was answered from another entry"
        extras = glb_extras(response.data)
        got = {"fov": extras["fov_deg"], "near": extras["near"], "far": extras["far"]}
        got["grid_side"] = max(extras["grid"])
        assert got[name] == pytest.approx(float(value)), (name, extras)
        assert response.data != first.data
