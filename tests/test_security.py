"""API keys, CORS, security headers and in-memory uploads (midas_service/web/security.py)."""

from __future__ import annotations

import hmac
import io
import re
import tempfile

import cv2
import numpy as np
import pytest
import requests

from devtools.servers import gunicorn, nginx
from midas_service.config import ConfigError, Settings
from midas_service.web import create_app

KEYS = ("first-key-0123", "second-key-4567")
ORIGIN = "https://depth.example.org"


@pytest.fixture(scope="module")
def locked(model_path):
    """Keys and CORS on, /metrics still public (the default), model loaded."""
    settings = Settings(
        model_path=model_path,
        allow_untrained=True,
        warmup_runs=1,
        cache_mb=0,
        api_keys=KEYS,
        cors_origins=(ORIGIN, "http://localhost:3000"),
    )
    app = create_app(settings, load_model=False)
    app.extensions["midas_runtime"].load()
    return app.test_client()


def assert_unauthorized(response, invalid: bool) -> None:
    assert response.status_code == 401
    body = response.get_json()
    assert body["error"]["code"] == "unauthorized" and body["error"]["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="midas"')
    assert ('error="invalid_token"' in challenge) == invalid


def heatmap(response) -> np.ndarray:
    assert response.status_code == 200, response.data[:300]
    return cv2.imdecode(np.frombuffer(response.data, np.uint8), cv2.IMREAD_COLOR)


def test_keys_are_off_by_default(client, jpeg_640x480):
    response = client.post("/predict", data=jpeg_640x480, content_type="image/jpeg")
    assert heatmap(response).shape == (480, 640, 3)
    assert "WWW-Authenticate" not in response.headers
    assert "Access-Control-Allow-Origin" not in response.headers


def test_predict_needs_one_of_the_keys(locked, jpeg_640x480):
    def post(**headers: str):
        return locked.post(
            "/predict", data=jpeg_640x480, content_type="image/jpeg", headers=headers
        )

    assert_unauthorized(post(), invalid=False)
    assert_unauthorized(post(Authorization="Bearer wrong-key"), invalid=True)
    assert_unauthorized(post(**{"X-API-Key": KEYS[0] + "x"}), invalid=True)
    assert_unauthorized(post(Authorization=f"Basic {KEYS[0]}"), invalid=False)
    assert_unauthorized(post(Authorization="Bearer ünïcode"), invalid=True)
    # A prefix of a key is not the key (a comparison of the given length only would pass it).
    for prefix in ("f", KEYS[0][:-1], KEYS[1][:6]):
        assert_unauthorized(post(Authorization=f"Bearer {prefix}"), invalid=True)
        assert_unauthorized(post(**{"X-API-Key": prefix}), invalid=True)
    assert_unauthorized(post(Authorization=f"Bearer {KEYS[0]}{KEYS[1]}"), invalid=True)
    query = locked.post(f"/predict?api_key={KEYS[0]}", data=jpeg_640x480, content_type="image/jpeg")
    assert_unauthorized(query, invalid=False)  # keys never travel in URLs (they end up in logs)
    assert heatmap(post(Authorization=f"Bearer {KEYS[0]}")).shape == (480, 640, 3)
    assert heatmap(post(Authorization=f"bearer {KEYS[1]}")).shape == (480, 640, 3)
    assert heatmap(post(**{"X-API-Key": KEYS[1]})).shape == (480, 640, 3)


def test_keys_are_compared_in_constant_time_against_every_key(locked, monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("midas_service.web.security.hmac.compare_digest", spy)
    locked.post("/predict", headers={"X-API-Key": KEYS[0]})
    assert calls == [(KEYS[0].encode(), KEYS[0].encode()), (KEYS[0].encode(), KEYS[1].encode())]


def test_probes_page_and_documents_are_open_but_computing_needs_a_key(locked, jpeg_640x480):
    open_paths = (
        "/healthz",
        "/readyz",
        "/",
        "/colormaps.json",
        "/openapi.json",
        "/static/style.css",
    )
    for path in (*open_paths, "/metrics"):
        assert locked.get(path).status_code == 200, path
    page_post = locked.post(
        "/",
        data={"image": (io.BytesIO(jpeg_640x480), "cat.jpg")},
        content_type="multipart/form-data",
    )
    assert_unauthorized(page_post, invalid=False)
    # No such path is a 404 with or without a key: a 401 would hide nothing and mislead.
    for path in ("/no-such-page", "/predict/", "/admin"):
        missing = locked.get(path)
        assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
        assert "WWW-Authenticate" not in missing.headers
    assert locked.get("/predict").status_code == 405  # wrong method: routing answers too


def test_openapi_says_where_a_key_is_needed(locked, client):
    spec = locked.get("/openapi.json").get_json()
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    predict = spec["paths"]["/predict"]["post"]
    assert predict["security"] == [{"bearer": []}, {"apiKey": []}] and "401" in predict["responses"]
    assert "security" not in spec["paths"]["/metrics"]["get"]  # public by default
    open_spec = client.get("/openapi.json").get_json()
    assert "securitySchemes" not in open_spec["components"]
    assert "security" not in open_spec["paths"]["/predict"]["post"]


def test_metrics_can_require_a_key(model_path):
    settings = Settings(model_path=model_path, api_keys=KEYS, metrics_public=False)
    client = create_app(settings, load_model=False).test_client()
    assert_unauthorized(client.get("/metrics"), invalid=False)
    response = client.get("/metrics", headers={"Authorization": f"Bearer {KEYS[0]}"})
    assert response.status_code == 200 and b"midas_requests_total" in response.data
    assert client.get("/healthz").status_code == 200
    spec = client.get("/openapi.json").get_json()
    assert "401" in spec["paths"]["/metrics"]["get"]["responses"]


PROXIED = {"X-Forwarded-For": "203.0.113.7"}  # what nginx and the Ingress add


def test_public_probes_say_ready_and_nothing_more(locked):
    """Through a proxy /readyz and /healthz carry no pid, versions, paths or metadata; on
    Gunicorn's own port (no forwarding header) operators still get all of it."""
    public = locked.get("/readyz", headers=PROXIED)
    assert public.status_code == 200 and public.get_json() == {"ready": True}
    assert locked.get("/readyz", headers={"Forwarded": "for=203.0.113.7"}).get_json() == {
        "ready": True
    }
    health = locked.get("/healthz", headers=PROXIED)
    assert health.status_code == 200 and health.get_json() == {"status": "alive", "error": None}
    operator = locked.get("/readyz").get_json()
    assert operator["ready"] is True and isinstance(operator["pid"], int)
    assert {"versions", "metadata", "openmp", "threads", "settings"} <= set(operator)


def test_a_failed_model_is_not_described_to_the_public(tmp_path):
    settings = Settings(model_path=tmp_path / "missing.pt", warmup_runs=0)
    app = create_app(settings, load_model=False)
    app.extensions["midas_runtime"].load()
    client = app.test_client()
    public = client.get("/healthz", headers=PROXIED)
    assert public.status_code == 500 and public.get_json() == {"status": "failed", "error": None}
    assert client.get("/readyz", headers=PROXIED).get_json() == {"ready": False}
    for path in ("/healthz", "/readyz"):  # the operator sees why, with the path
        assert str(tmp_path) in client.get(path).get_json()["error"]


def test_private_metrics_are_hidden_publicly_even_without_keys(model_path):
    settings = Settings(model_path=model_path, metrics_public=False)
    client = create_app(settings, load_model=False).test_client()
    hidden = client.get("/metrics", headers=PROXIED)
    assert hidden.status_code == 404 and hidden.get_json()["error"]["code"] == "not_found"
    assert b"midas_" not in hidden.data
    scrape = client.get("/metrics")  # Prometheus on the pod's own port
    assert scrape.status_code == 200 and b"midas_requests_total" in scrape.data
    shown = create_app(Settings(model_path=model_path), load_model=False).test_client()
    assert shown.get("/metrics", headers=PROXIED).status_code == 200  # the default: public


def test_cors_is_off_by_default(client):
    response = client.get("/readyz", headers={"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = client.options(
        "/predict", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_cors_answers_exactly_the_listed_origins(locked, jpeg_640x480):
    allowed = locked.post(
        "/predict",
        data=jpeg_640x480,
        content_type="image/jpeg",
        headers={"Origin": ORIGIN, "X-API-Key": KEYS[0]},
    )
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in allowed.headers["Vary"]
    exposed = {h.strip() for h in allowed.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"Server-Timing", "X-Request-ID"} <= exposed
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    for stranger in (ORIGIN + ".evil.com", "https://evil.com", "http://depth.example.org", "null"):
        response = locked.get("/readyz", headers={"Origin": stranger})
        assert "Access-Control-Allow-Origin" not in response.headers, stranger
        assert "Origin" in response.headers["Vary"]


def test_a_preflight_needs_no_key_and_names_methods_and_headers(locked):
    headers = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    preflight = locked.options("/predict", headers=headers)
    assert preflight.status_code == 204 and preflight.data == b""
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert all(name in allowed for name in ("authorization", "x-api-key", "content-type"))
    stranger = locked.options("/predict", headers={**headers, "Origin": "https://evil.com"})
    assert "Access-Control-Allow-Origin" not in stranger.headers


def test_security_headers_are_on_every_answer(locked, jpeg_640x480):
    key = {"X-API-Key": KEYS[0]}
    answers = [
        locked.get("/"),
        locked.get("/healthz"),
        locked.get("/metrics"),
        locked.post("/predict"),  # 401
        locked.post("/predict", headers=key),  # 400 missing image
        locked.get("/nope", headers=key),  # 404
        locked.post("/predict", data=jpeg_640x480, content_type="image/jpeg", headers=key),
        locked.post("/predict", data=b"x" * (11 << 20), content_type="image/jpeg", headers=key),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 401, 400, 404, 200, 413]
    for answer in answers:
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert answer.headers["X-Frame-Options"] == "DENY"


def test_a_big_multipart_upload_is_never_written_to_a_temporary_file(model_path, monkeypatch):
    """Werkzeug spools file parts over 500 KB to disk by default; this service must not."""
    noise = np.random.default_rng(0).integers(0, 255, (900, 1200, 3), dtype=np.uint8)
    png = cv2.imencode(".png", noise)[1].tobytes()
    assert len(png) > 3 * 500 * 1024
    settings = Settings(model_path=model_path, allow_untrained=True, warmup_runs=0, cache_mb=0)
    app = create_app(settings, load_model=False)
    app.extensions["midas_runtime"].load()

    def no_disk(*args, **kwargs):
        raise AssertionError("an upload went to a temporary file")

    for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, no_disk)
    monkeypatch.setattr("werkzeug.formparser.SpooledTemporaryFile", no_disk)
    response = app.test_client().post(
        "/predict?output=depth",
        data={"image": (io.BytesIO(png), "noise.png")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    assert np.load(io.BytesIO(response.data)).shape == (900, 1200)


def test_security_settings_from_the_environment():
    env = {
        "MIDAS_API_KEYS": " a-key , another ,",
        "MIDAS_CORS_ORIGINS": "https://a.example, http://localhost:3000",
        "MIDAS_METRICS_PUBLIC": "0",
    }
    settings = Settings.from_env(env)
    assert settings.api_keys == ("a-key", "another")
    assert settings.cors_origins == ("https://a.example", "http://localhost:3000")
    assert settings.metrics_public is False
    assert Settings.from_env({}).api_keys == () and Settings.from_env({}).metrics_public
    for bad in ("*", "https://a.example/", "a.example"):
        with pytest.raises(ConfigError, match="MIDAS_CORS_ORIGINS"):
            Settings.from_env({"MIDAS_CORS_ORIGINS": bad})


def test_no_server_version_and_keys_through_gunicorn_and_nginx(model_path, tmp_path, jpeg_640x480):
    with (
        gunicorn(model_path, tmp_path, workers=1, MIDAS_API_KEYS=KEYS[0]) as (direct, _),
        nginx(direct, tmp_path) as proxied,
    ):
        # nginx marks what it passes on as public: readiness without the operator's detail.
        assert requests.get(f"{proxied}/readyz").json() == {"ready": True}
        assert "pid" in requests.get(f"{direct}/readyz").json()
        for base in (direct, proxied):
            missing = requests.get(f"{base}/no-such-page")
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        # A key sent in the URL is refused and never lands in Gunicorn's access log.
        in_url = requests.post(
            f"{direct}/predict?output=depth&api_key={KEYS[0]}",
            data=jpeg_640x480,
            headers={"Content-Type": "image/jpeg", "X-Request-ID": "key-in-url"},
        )
        assert in_url.status_code == 401
        for base in (direct, proxied):
            health = requests.get(f"{base}/healthz")
            server = health.headers.get("Server", "")
            assert not re.search(r"\d", server), f"{base} sends Server: {server}"
            assert health.headers["X-Content-Type-Options"] == "nosniff"
            refused = requests.post(
                f"{base}/predict", data=jpeg_640x480, headers={"Content-Type": "image/jpeg"}
            )
            assert refused.status_code == 401 and "WWW-Authenticate" in refused.headers
            assert refused.json()["error"]["code"] == "unauthorized"
            allowed = requests.post(
                f"{base}/predict",
                data=jpeg_640x480,
                headers={"Content-Type": "image/jpeg", "Authorization": f"Bearer {KEYS[0]}"},
            )
            assert allowed.status_code == 200
            picture = cv2.imdecode(np.frombuffer(allowed.content, np.uint8), cv2.IMREAD_COLOR)
            assert picture.shape == (480, 640, 3)
            # Which worker answered: for operators on Gunicorn's port, hidden by nginx.
            for response in (health, refused, allowed):
                assert ("X-Worker-PID" in response.headers) == (base == direct)
        noise = np.random.default_rng(1).integers(0, 255, (900, 1200, 3), np.uint8)
        big = cv2.imencode(".png", noise)[1]
        assert big.nbytes > 3 * 1024 * 1024
        response = requests.post(
            f"{proxied}/predict?output=depth",
            files={"image": ("noise.png", big.tobytes(), "image/png")},
            headers={"X-API-Key": KEYS[0]},
        )
        assert response.status_code == 200
        # nginx warns whenever it spills a request body to a temporary file
        (error_log,) = tmp_path.glob("nginx-*/nginx-error.log")
        assert "temporary file" not in error_log.read_text()
    (access_log,) = tmp_path.glob("gunicorn-*.log")
    lines = [line for line in access_log.read_text().splitlines() if "key-in-url" in line]
    assert len(lines) == 1 and 'query="output=depth&api_key=REDACTED"' in lines[0], lines
    assert KEYS[0] not in access_log.read_text()
