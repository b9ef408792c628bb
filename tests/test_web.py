"""The Flask app in-process: the /predict contract, errors, probes, page, OpenAPI."""

from __future__ import annotations

import base64
import io
import json
import re

import cv2
import numpy as np
import pytest

from midas_service.config import ConfigError, Settings
from midas_service.web import create_app


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def assert_json_error(response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"]["code"] == code and body["error"]["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "Traceback" not in response.get_data(as_text=True)


def test_raw_body_and_multipart_give_the_same_heatmap(backend_client, jpeg_640x480):
    raw = backend_client.post("/predict", data=jpeg_640x480, content_type="image/jpeg")
    octet = backend_client.post(
        "/predict", data=jpeg_640x480, content_type="application/octet-stream"
    )
    form = backend_client.post(
        "/predict",
        data={"image": (io.BytesIO(jpeg_640x480), "cat.jpg")},
        content_type="multipart/form-data",
    )
    assert raw.status_code == octet.status_code == form.status_code == 200
    assert raw.mimetype == "image/jpeg"
    assert decode(raw.data).shape == (480, 640, 3)
    np.testing.assert_array_equal(decode(raw.data), decode(form.data))
    np.testing.assert_array_equal(decode(raw.data), decode(octet.data))


def test_parameters_may_come_from_the_form(client, jpeg_640x480):
    response = client.post(
        "/predict",
        data={"image": (io.BytesIO(jpeg_640x480), "cat.jpg"), "output": "depth", "format": "json"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200 and response.mimetype == "application/json"
    document = response.get_json()
    assert (document["width"], document["height"]) == (640, 480)


@pytest.mark.parametrize(
    ("query", "form"),
    [("output=depth", {"output": "heatmap"}), ("colormap=magma", {"colormap": "magma"})],
)
def test_a_parameter_in_both_the_query_and_the_form_is_refused(client, jpeg_640x480, query, form):
    response = client.post(
        f"/predict?{query}",
        data={"image": (io.BytesIO(jpeg_640x480), "cat.jpg"), **form},
        content_type="multipart/form-data",
    )
    assert_json_error(response, 400, "bad_parameter")
    name = query.split("=")[0]
    assert f"{name} is given 2 times" in response.get_json()["error"]["message"]


def test_json_output_is_refused_for_huge_maps(client):
    from midas_service.images.outputs import JSON_MAX_PIXELS

    _, big = cv2.imencode(".png", np.zeros((1000, JSON_MAX_PIXELS // 1000 + 1), np.uint8))
    response = client.post(
        "/predict?output=depth&format=json", data=big.tobytes(), content_type="image/png"
    )
    assert_json_error(response, 400, "output_too_large")
    assert "npy" in response.get_json()["error"]["message"]
    npy = client.post("/predict?output=depth", data=big.tobytes(), content_type="image/png")
    assert npy.status_code == 200


def test_a_second_file_is_refused_not_dropped(client, jpeg_640x480):
    response = client.post(
        "/predict",
        data={"image": [(io.BytesIO(jpeg_640x480), "a.jpg"), (io.BytesIO(jpeg_640x480), "b.jpg")]},
        content_type="multipart/form-data",
    )
    assert_json_error(response, 400, "bad_parameter")
    extra = client.post(
        "/predict",
        data={"image": (io.BytesIO(jpeg_640x480), "a.jpg"), "mask": (io.BytesIO(b"x"), "m.png")},
        content_type="multipart/form-data",
    )
    assert_json_error(extra, 400, "bad_parameter")


def test_request_id_is_echoed_or_generated(client, jpeg_640x480):
    given = client.post(
        "/predict",
        data=jpeg_640x480,
        content_type="image/jpeg",
        headers={"X-Request-ID": "trace-42"},
    )
    assert given.headers["X-Request-ID"] == "trace-42"
    hostile = client.get("/healthz", headers={"X-Request-ID": "bad id; with spaces"})
    assert hostile.headers["X-Request-ID"] != "bad id; with spaces"
    assert len(hostile.headers["X-Request-ID"]) == 32


def test_server_timing_names_each_stage(backend_client, jpeg_640x480):
    response = backend_client.post("/predict", data=jpeg_640x480, content_type="image/jpeg")
    parts = [part.strip() for part in response.headers["Server-Timing"].split(",")]
    names = [part.split(";")[0] for part in parts]
    engine = backend_client.application.extensions["midas_runtime"].estimator.engine
    # OpenVINO's workers take turns (core_share): the wait for one is part of "infer".
    turn = ["turn"] if engine.sharing == "turns" else []
    assert names == [
        "threads",
        *turn,
        "queue",
        "decode",
        "preprocess",
        "infer",
        "postprocess",
        "encode",
        "total",
    ]
    # Alone in its process (no other worker computing), a request gets every thread.
    assert parts[0] == f"threads;desc={engine.threads}"
    assert (engine.sharing == "turns") == (engine.backend == "openvino")


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("output=hologram", "bad_parameter"),
        ("output=depth&format=jpeg", "bad_parameter"),
        ("format=npy", "bad_parameter"),
        ("colormap=rainbow", "bad_parameter"),
        ("colourmap=magma", "bad_parameter"),
        ("output=depth&output=heatmap", "bad_parameter"),
    ],
)
def test_bad_parameters_are_400(client, jpeg_640x480, query, code):
    response = client.post(f"/predict?{query}", data=jpeg_640x480, content_type="image/jpeg")
    assert_json_error(response, 400, code)


def test_each_error_is_json_and_the_next_request_works(client, jpeg_640x480):
    cases = [
        (
            client.post("/predict", data=b"<html></html>", content_type="text/html"),
            415,
            "unsupported_media_type",
        ),
        (
            client.post("/predict", data=b"GIF89a....", content_type="image/gif"),
            415,
            "unsupported_media_type",
        ),
        (
            client.post("/predict", data=b"\xff\xd8\xff\xe0broken", content_type="image/jpeg"),
            400,
            "undecodable_image",
        ),
        (client.post("/predict", data=b"", content_type="image/jpeg"), 400, "empty_image"),
        (
            client.post(
                "/predict",
                data={"file": (io.BytesIO(b"x"), "x.jpg")},
                content_type="multipart/form-data",
            ),
            400,
            "missing_image",
        ),
        (
            client.post(
                "/predict", data=b"\xff\xd8\xff" + bytes(3 << 20), content_type="image/jpeg"
            ),
            413,
            "too_large",
        ),
        (client.get("/no/such/page"), 404, "not_found"),
        (client.get("/predict"), 405, "method_not_allowed"),
        (client.delete("/healthz"), 405, "method_not_allowed"),
    ]
    for response, status, code in cases:
        assert_json_error(response, status, code)
        assert (
            client.post("/predict", data=jpeg_640x480, content_type="image/jpeg").status_code == 200
        )


def test_an_internal_error_is_a_json_500_without_traceback(app, jpeg_640x480, monkeypatch):
    runtime = app.extensions["midas_runtime"]

    def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(runtime.estimator, "predict", explode)
    client = app.test_client()
    response = client.post("/predict", data=jpeg_640x480, content_type="image/jpeg")
    assert_json_error(response, 500, "internal_error")
    assert "secret internal detail" not in response.get_data(as_text=True)
    monkeypatch.undo()
    assert client.post("/predict", data=jpeg_640x480, content_type="image/jpeg").status_code == 200


def test_not_ready_is_503_and_health_stays_alive(model_path, jpeg_640x480):
    settings = Settings(model_path=model_path, allow_untrained=True, ready_wait_s=0.2)
    app = create_app(settings, load_model=False)
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["ready"] is False
    response = client.post("/predict", data=jpeg_640x480, content_type="image/jpeg")
    assert_json_error(response, 503, "not_ready")
    assert response.headers["Retry-After"] == "1"


def test_the_no_javascript_page_explains_a_busy_server_in_html(model_path, jpeg_640x480):
    settings = Settings(model_path=model_path, allow_untrained=True, ready_wait_s=0.2)
    client = create_app(settings, load_model=False).test_client()
    response = client.post(
        "/",
        data={"image": (io.BytesIO(jpeg_640x480), "cat.jpg")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 503 and response.mimetype == "text/html"
    assert response.headers["Retry-After"] == "1"
    assert "The server is busy" in response.get_data(as_text=True)


def test_untrained_model_is_refused_unless_allowed(random_model_path):
    app = create_app(Settings(model_path=random_model_path, warmup_runs=0), load_model=False)
    runtime = app.extensions["midas_runtime"]
    runtime.load()
    assert not runtime.ready and "MIDAS_RANDOM_WEIGHTS" in runtime.error
    client = app.test_client()
    assert client.get("/healthz").status_code == 500
    assert client.get("/readyz").status_code == 503


def test_readyz_reports_model_metadata(backend_client, weights_file):
    from midas_service.export.weights import sha256_of

    info = backend_client.get("/readyz").get_json()
    assert info["ready"] is True and info["threads"] >= 1
    assert info["metadata"]["weights_sha256"] == sha256_of(weights_file)
    assert info["metadata"]["input_rule"] and info["metadata"]["torch_version"]
    assert {"python", "onnxruntime", "numpy"} <= set(info["versions"])


def test_openapi_describes_predict(client):
    spec = client.get("/openapi.json").get_json()
    predict = spec["paths"]["/predict"]["post"]
    params = {p["name"]: p for p in predict["parameters"]}
    assert params["output"]["schema"]["enum"] == ["heatmap", "depth", "side", "pointcloud", "mesh"]
    assert "inferno" in params["colormap"]["schema"]["enum"]
    assert {"multipart/form-data", "image/*"} <= set(predict["requestBody"]["content"])
    assert {"400", "413", "415", "500", "503"} <= set(predict["responses"])
    json.dumps(spec)


def assert_strict_page(response) -> None:
    """Nothing inline that a strict Content-Security-Policy would refuse, and that policy sent."""
    html = response.get_data(as_text=True)
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.S)
    assert len(scripts) == 1 and all(body.strip() == "" for body in scripts)
    assert all(" src=" in tag for tag in re.findall(r"<script\b[^>]*>", html))
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers
    policy = response.headers["Content-Security-Policy"]
    csp = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert csp == {  # every directive: one missing (base-uri, form-action) is a hole
        "default-src": "'none'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data: blob:",
        "media-src": "'self' blob:",  # the finished job's video plays from a blob
        "connect-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
        "require-trusted-types-for": "'script'",
    }


def test_upload_page_works_without_javascript(client, jpeg_640x480):
    page = client.get("/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert_strict_page(page)
    assert 'enctype="multipart/form-data"' in html and 'name="image"' in html
    assert 'name="colormap"' in html and '<button type="submit"' in html
    result = client.post(
        "/",
        data={"image": (io.BytesIO(jpeg_640x480), "cat.jpg"), "colormap": "viridis"},
        content_type="multipart/form-data",
    )
    assert result.status_code == 200
    assert_strict_page(result)
    match = re.search(r'src="data:image/jpeg;base64,([^"]+)"', result.get_data(as_text=True))
    side = decode(base64.b64decode(match.group(1)))
    assert side.shape == (480, 2 * 640, 3)  # the photo beside its heatmap
    bad = client.post(
        "/",
        data={"image": (io.BytesIO(b"not an image"), "x.jpg")},
        content_type="multipart/form-data",
    )
    assert bad.status_code == 415 and "not a supported image" in bad.get_data(as_text=True)


def test_colour_tables_for_the_page_are_opencvs(client):
    from midas_service.images.visualize import COLORMAPS

    response = client.get("/colormaps.json")
    assert response.status_code == 200 and "max-age" in response.headers["Cache-Control"]
    assert "Content-Security-Policy" not in response.headers  # only HTML pages carry it
    tables = response.get_json()
    assert set(tables) == set(COLORMAPS)
    ramp = np.arange(256, dtype=np.uint8).reshape(1, 256)
    for name, encoded in tables.items():
        rgb = np.frombuffer(base64.b64decode(encoded), np.uint8).reshape(256, 3)
        code = COLORMAPS[name]
        expected = (
            np.repeat(ramp[0, :, None], 3, axis=1)
            if code is None
            else (cv2.applyColorMap(ramp, code)[0, :, ::-1])
        )
        assert np.array_equal(rgb, expected), name


def test_untrained_banner_is_shown_only_for_an_untrained_model(client, random_model_path):
    assert "untrained model" not in client.get("/").get_data(as_text=True)
    settings = Settings(model_path=random_model_path, allow_untrained=True, warmup_runs=0)
    app = create_app(settings, load_model=False)
    app.extensions["midas_runtime"].load()
    page = app.test_client().get("/").get_data(as_text=True)
    assert "untrained model" in page


def test_settings_from_environment():
    settings = Settings.from_env(
        {
            "MIDAS_MAX_UPLOAD_MB": "5",
            "MIDAS_MAX_PIXELS": "4e6",
            "MIDAS_BACKEND": "torchscript",
            "MIDAS_RANDOM_WEIGHTS": "1",
        }
    )
    assert settings.max_upload_bytes == 5 * 1024 * 1024 and settings.max_pixels == 4_000_000
    assert settings.backend == "torchscript" and settings.allow_untrained
    assert Settings.from_env({}) == Settings()
    with pytest.raises(ConfigError):
        Settings.from_env({"MIDAS_BACKEND": "tensorflow"})
    with pytest.raises(ConfigError):
        Settings.from_env({"MIDAS_THREADS": "two"})


# What a person sees: pictures and numbers, checked against an independent computation.


def depth_of(client, data: bytes) -> np.ndarray:
    response = client.post("/predict?output=depth&format=npy", data=data, content_type="image/jpeg")
    assert response.status_code == 200
    return np.load(io.BytesIO(response.data))


def expected_heatmap(depth: np.ndarray, colormap: str) -> np.ndarray:
    """Min-max to 0..255 (docs/performance.md, the upload page), then OpenCV's colormap (BGR)."""
    gray = np.rint((depth - depth.min()) / (depth.max() - depth.min()) * 255).astype(np.uint8)
    if colormap == "gray":
        return np.repeat(gray[..., None], 3, axis=2)
    return cv2.applyColorMap(gray, getattr(cv2, f"COLORMAP_{colormap.upper()}"))


def assert_close_picture(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal but for min-max rounding: a pixel may land on the neighbouring colormap entry."""
    assert got.shape == expected.shape
    diff = np.abs(got.astype(int) - expected).max(axis=2)
    assert (diff == 0).mean() > 0.99 and diff.max() <= 8


@pytest.mark.parametrize("colormap", ["inferno", "magma", "viridis", "turbo", "plasma", "gray"])
def test_heatmap_is_opencvs_colormap_of_the_depth(backend_client, jpeg_640x480, colormap):
    depth = depth_of(backend_client, jpeg_640x480)
    response = backend_client.post(
        f"/predict?format=png&colormap={colormap}", data=jpeg_640x480, content_type="image/jpeg"
    )
    assert response.status_code == 200
    assert_close_picture(decode(response.data), expected_heatmap(depth, colormap))


def test_each_colormap_gives_different_pixels(client, jpeg_640x480):
    pictures = {
        name: client.post(
            f"/predict?format=png&colormap={name}", data=jpeg_640x480, content_type="image/jpeg"
        ).data
        for name in ("inferno", "magma", "viridis", "turbo", "plasma", "gray")
    }
    assert len({decode(data).tobytes() for data in pictures.values()}) == len(pictures)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_side_is_the_photo_then_its_heatmap(backend_client, jpeg_640x480, fmt):
    photo = cv2.imdecode(np.frombuffer(jpeg_640x480, np.uint8), cv2.IMREAD_COLOR)  # BGR
    depth = depth_of(backend_client, jpeg_640x480)
    response = backend_client.post(
        f"/predict?output=side&format={fmt}&colormap=viridis",
        data=jpeg_640x480,
        content_type="image/jpeg",
    )
    side = decode(response.data)
    assert side.shape == (480, 1280, 3)
    left, right = side[:, :640].astype(int), side[:, 640:]
    if fmt == "png":
        assert np.abs(left - photo).max() <= 1
        assert_close_picture(right, expected_heatmap(depth, "viridis"))
    else:  # within JPEG error; the swapped channel order would be far off
        assert np.abs(left - photo).mean() < 4
        assert np.abs(left - photo[..., ::-1]).mean() > 20
        assert np.abs(right.astype(int) - expected_heatmap(depth, "viridis")).mean() < 4


def test_near_is_bright_for_a_depth_map_we_choose(app, jpeg_640x480, monkeypatch):
    runtime = app.extensions["midas_runtime"]
    ramp = np.tile(np.linspace(0.0, 3.0, 640, dtype=np.float32), (480, 1))  # near on the right
    monkeypatch.setattr(runtime.estimator, "predict", lambda rgb, times=None: ramp)
    response = app.test_client().post(
        "/predict?format=png", data=jpeg_640x480, content_type="image/jpeg"
    )
    picture = decode(response.data)
    assert (picture[:, -1] == (164, 255, 252)).all()  # inferno's 255: pale yellow (BGR)
    assert (picture[:, 0] == (4, 0, 0)).all()  # inferno's 0: nearly black


def test_every_depth_format_holds_the_npy_numbers(backend_client, jpeg_640x480):
    from midas_service.images.encode import from_pfm

    depth = depth_of(backend_client, jpeg_640x480)
    assert depth.shape == (480, 640) and depth.max() > depth.min()

    def fetch(fmt: str) -> bytes:
        response = backend_client.post(
            f"/predict?output=depth&format={fmt}", data=jpeg_640x480, content_type="image/jpeg"
        )
        assert response.status_code == 200
        return response.data

    np.testing.assert_array_equal(from_pfm(fetch("pfm")), depth)
    document = json.loads(fetch("json"))
    np.testing.assert_array_equal(np.array(document["depth"], dtype=np.float32), depth)
    assert (document["min"], document["max"]) == (float(depth.min()), float(depth.max()))
    png16 = decode(fetch("png16"))
    scaled = (depth.astype(np.float64) - depth.min()) / (depth.max() - depth.min()) * 65535
    assert png16.dtype == np.uint16 and np.abs(png16 - np.rint(scaled)).max() <= 1


def test_non_finite_depth_is_a_500_with_a_log_line(broken_model_path, jpeg_640x480, caplog):
    settings = Settings(model_path=broken_model_path, backend="torchscript", warmup_runs=0)
    app = create_app(settings, load_model=False)
    app.extensions["midas_runtime"].load()
    response = app.test_client().post("/predict", data=jpeg_640x480, content_type="image/jpeg")
    assert_json_error(response, 500, "internal_error")
    assert "the model produced non-finite output: 1 of" in caplog.text


def test_non_finite_depth_during_warm_up_fails_the_load(broken_model_path):
    settings = Settings(model_path=broken_model_path, backend="torchscript", warmup_runs=1)
    app = create_app(settings, load_model=False)
    runtime = app.extensions["midas_runtime"]
    runtime.load()
    assert not runtime.ready and "non-finite" in runtime.error


def test_model_without_metadata_is_refused_unless_allowed(bare_model_path, jpeg_640x480):
    refused = create_app(Settings(model_path=bare_model_path, warmup_runs=0), load_model=False)
    runtime = refused.extensions["midas_runtime"]
    runtime.load()
    assert not runtime.ready
    assert "no export metadata" in runtime.error and "MIDAS_ALLOW_NO_METADATA=1" in runtime.error
    assert refused.test_client().get("/readyz").status_code == 503
    settings = Settings(model_path=bare_model_path, warmup_runs=0, allow_no_metadata=True)
    allowed = create_app(settings, load_model=False)
    allowed.extensions["midas_runtime"].load()
    response = allowed.test_client().post("/predict", data=jpeg_640x480, content_type="image/jpeg")
    assert response.status_code == 200
    assert Settings.from_env({"MIDAS_ALLOW_NO_METADATA": "1"}).allow_no_metadata


def page_picture(response) -> np.ndarray:
    import base64

    match = re.search(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', response.get_data(True))
    assert match, "no result picture on the page"
    return decode(base64.b64decode(match.group(1)))


def test_upload_page_uses_the_chosen_colormap(client, jpeg_640x480):
    depth = depth_of(client, jpeg_640x480)
    result = client.post(
        "/",
        data={"image": (io.BytesIO(jpeg_640x480), "cat.jpg"), "colormap": "viridis"},
        content_type="multipart/form-data",
    )
    right = page_picture(result)[:, 640:].astype(int)
    assert np.abs(right - expected_heatmap(depth, "viridis")).mean() < 4
    assert np.abs(right - expected_heatmap(depth, "inferno")).mean() > 20


def test_upload_page_refuses_an_unknown_colormap_like_predict(client, jpeg_640x480):
    page = client.post(
        "/",
        data={"image": (io.BytesIO(jpeg_640x480), "cat.jpg"), "colormap": "rainbow"},
        content_type="multipart/form-data",
    )
    api = client.post("/predict?colormap=rainbow", data=jpeg_640x480, content_type="image/jpeg")
    assert page.status_code == api.status_code == 400
    html = page.get_data(as_text=True)
    assert api.get_json()["error"]["message"].replace("'", "&#39;") in html
    assert "data:image/jpeg;base64," not in html


# One list of error codes: the classes in errors.py, docs/api.md, the OpenAPI document.


def readme_error_codes() -> dict[str, tuple[int, str]]:
    from devtools.support import ROOT

    text = (ROOT / "docs" / "api.md").read_text()
    section = text.split("## Error codes", 1)[1].split("\n\n#", 1)[0]
    rows = re.findall(r"^\| (\d{3}) \| `([a-z_]+)` \| (.+?) \|$", section, flags=re.M)
    return {code: (int(status), meaning) for status, code, meaning in rows}


def test_api_doc_lists_exactly_the_error_codes_of_the_code():
    from midas_service.errors import ERROR_CODES

    listed = readme_error_codes()
    assert listed == {code: (e.status, e.meaning) for code, e in ERROR_CODES.items()}


def test_openapi_lists_every_error_code_under_its_status(client):
    from midas_service.errors import ERROR_CODES

    spec = client.get("/openapi.json").get_json()
    schema = spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
    assert schema["code"]["enum"] == list(ERROR_CODES)
    responses = spec["paths"]["/predict"]["post"]["responses"]
    for code, error in ERROR_CODES.items():
        assert f"`{code}`" in responses[str(error.status)]["description"]


def test_every_code_the_source_sends_is_in_the_table():
    from devtools.support import ROOT
    from midas_service.errors import ERROR_CODES, HTTP_ERRORS, ImageError, ServiceError

    sent = {error.code for error in HTTP_ERRORS.values()}
    for path in (ROOT / "midas_service").rglob("*.py"):
        if path.name != "errors.py":  # codes are set on the error classes, nowhere else
            assert not re.search(r'\bcode\b[^=\n]*= "\w+"', path.read_text()), path
    for template in (ROOT / "nginx").glob("*.template"):  # nginx's own JSON error pages
        sent |= set(re.findall(r'"code":"(\w+)"', template.read_text()))
    assert {"bad_request", "unavailable"} <= sent <= set(ERROR_CODES)

    def every(cls: type[ServiceError]) -> set[type[ServiceError]]:
        return {cls}.union(*(every(sub) for sub in cls.__subclasses__()))

    # no photo refusal falls through to the fault code, and each code has one status
    assert all(cls.code != "internal_error" for cls in every(ImageError) - {ImageError})
    assert all(cls.status == ERROR_CODES[cls.code].status for cls in every(ServiceError))
