"""Every upload within the input limits gets its answer, or a 400 naming the output's limit.

Images at and just over each format's limit (JPEG 65,500 px per side, PNG 1,000,000, JSON 2 MP,
the side-by-side twice as wide), in-process and through a real Gunicorn. A refusal is decided
from the header: no pixel is decoded and no inference runs for it.
"""

from __future__ import annotations

import importlib
import io
import re

import cv2
import numpy as np
import pytest
import requests
from PIL import Image

from devtools.servers import gunicorn
from midas_service.images.encode import from_pfm
from midas_service.images.output_limits import output_refusal


def texture(width: int, height: int) -> np.ndarray:
    """A BGR picture whose every pixel differs from its neighbours (never a flat image)."""
    y, x = np.indices((height, width))
    planes = [(x * 7 + y) % 256, (y * 13 + x) % 256, ((x + y) * 3) % 256]
    return np.stack(planes, axis=-1).astype(np.uint8)


def png(width: int, height: int) -> bytes:
    """Lossless PNG via Pillow (libpng, as used by OpenCV, cannot write past 1,000,000 a side)."""
    out = io.BytesIO()
    Image.fromarray(texture(width, height)[..., ::-1]).save(out, "PNG")
    return out.getvalue()


def rotated_jpeg(stored_width: int, stored_height: int) -> bytes:
    """A JPEG stored at the given size whose EXIF says to display it turned a quarter (6)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    out = io.BytesIO()
    image = Image.fromarray(texture(stored_width, stored_height)[..., ::-1])
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()


# ---- the pure rule -----------------------------------------------------------------------------

AT_THE_LIMIT = [  # (width, height, output, format): the largest answer each format holds
    (65_500, 1, "heatmap", "jpeg"),
    (1, 65_500, "heatmap", "jpeg"),
    (32_750, 65_500, "side", "jpeg"),
    (1_000_000, 1, "heatmap", "png"),
    (500_000, 1, "side", "png"),
    (1, 1_000_000, "side", "png"),
    (1_000_000, 1, "depth", "png16"),
    (1_000_000, 2, "depth", "json"),
    (1_000_000, 40, "depth", "npy"),
    (1_000_000, 40, "depth", "pfm"),
]
JUST_OVER = [  # (width, height, output, format, words the message must hold)
    (65_501, 1, "heatmap", "jpeg", ["jpeg is limited to 65500 pixels per side", "format=png"]),
    (1, 65_501, "heatmap", "jpeg", ["65501", "format=png"]),
    (32_751, 1, "side", "jpeg", ["65502x1 picture", "65500 pixels per side", "format=png"]),
    (1, 65_501, "side", "jpeg", ["2x65501 picture", "format=png"]),
    (1_000_001, 1, "heatmap", "png", ["png is limited to 1000000 pixels per side"]),
    (500_001, 1, "side", "png", ["1000002x1", "use output=heatmap&format=png or output=depth"]),
    (1_000_001, 1, "depth", "png16", ["png16 is limited to 1000000", "npy, pfm or json"]),
    (666_667, 3, "depth", "json", ["json is limited to 2000000 pixels", "npy, png16 or pfm"]),
]


@pytest.mark.parametrize(("width", "height", "output", "fmt"), AT_THE_LIMIT)
def test_the_largest_answer_of_each_format_is_allowed(width, height, output, fmt):
    assert output_refusal(width, height, output, fmt) is None


@pytest.mark.parametrize(("width", "height", "output", "fmt", "words"), JUST_OVER)
def test_one_pixel_over_is_refused_naming_the_limit_and_what_fits(
    width, height, output, fmt, words
):
    message = output_refusal(width, height, output, fmt)
    assert message is not None
    assert f"output={output}&format={fmt}" in message and f"{width}x{height} image" in message
    for word in words:
        assert word in message


# ---- in-process: real images at and just over each limit ---------------------------------------

answers = importlib.import_module("midas_service.answer")  # where /predict decodes


@pytest.fixture
def spied(app, monkeypatch):
    """The test client, plus how many decodes and inferences each request cost."""
    calls = {"decode": 0, "infer": 0}
    estimator = app.extensions["midas_runtime"].estimator
    real_decode, real_predict = answers.decode_pixels, estimator.predict

    def decode(*args, **kwargs):
        calls["decode"] += 1
        return real_decode(*args, **kwargs)

    def predict(*args, **kwargs):
        calls["infer"] += 1
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(answers, "decode_pixels", decode)
    monkeypatch.setattr(estimator, "predict", predict)
    return app.test_client(), calls


def post(client, body: bytes, output: str, fmt: str):
    query = f"/predict?output={output}&format={fmt}"
    return client.post(query, data=body, content_type="application/octet-stream")


def assert_refused_from_header(response, calls, words: list[str]) -> None:
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"]["code"] == "output_too_large"
    for word in words:
        assert word in body["error"]["message"]
    assert calls == {"decode": 0, "infer": 0}
    timing = response.headers["Server-Timing"]
    assert "infer" not in timing and "decode" not in timing


def delivered(response, output: str, fmt: str) -> np.ndarray:
    """The answer as an array, after checking its status and media type."""
    assert response.status_code == 200, response.get_data(as_text=True)
    if fmt == "npy":
        return np.load(io.BytesIO(response.data))
    if fmt == "pfm":
        return from_pfm(response.data)
    if fmt == "json":
        document = response.get_json()
        return np.array(document["depth"], dtype=np.float32)
    assert response.mimetype == f"image/{'png' if fmt == 'png16' else fmt}"
    return cv2.imdecode(np.frombuffer(response.data, np.uint8), cv2.IMREAD_UNCHANGED)


DELIVERED = [  # (width, height, output, format): under or at the limit, and the examples
    (65_500, 1, "heatmap", "jpeg"),
    (1, 65_500, "heatmap", "jpeg"),
    (32_750, 1, "side", "jpeg"),
    (100_000, 10, "heatmap", "png"),
    (10, 70_000, "heatmap", "png"),
    (34_000, 20, "side", "png"),
    (500_000, 1, "side", "png"),
    (1_000_000, 1, "heatmap", "png"),
    (1, 1_000_000, "depth", "png16"),
    (1_000_000, 2, "depth", "json"),
    (1_000_000, 1, "depth", "npy"),
    (1, 1_000_000, "depth", "pfm"),
]


@pytest.mark.parametrize(("width", "height", "output", "fmt"), DELIVERED)
def test_answers_up_to_each_limit_are_delivered_at_full_size(spied, width, height, output, fmt):
    client, calls = spied
    answer = delivered(post(client, png(width, height), output, fmt), output, fmt)
    picture_width = 2 * width if output == "side" else width
    assert answer.shape[:2] == (height, picture_width)
    assert calls == {"decode": 1, "infer": 1}
    if output == "depth":
        assert answer.dtype == (np.uint16 if fmt == "png16" else np.float32)
        assert np.isfinite(answer).all() and answer.max() > answer.min()
    elif fmt == "png":  # the photo half of a lossless side-by-side is the upload itself
        photo = answer[:, :width] if output == "side" else None
        if photo is not None:
            np.testing.assert_array_equal(photo, texture(width, height))
    if output != "depth":
        heat = answer[:, -width:]
        assert len(np.unique(heat.reshape(-1, 3), axis=0)) > 1  # a heatmap, not a flat fill


REFUSED = [  # (width, height, output, format, words): just over, and the examples
    (65_501, 1, "heatmap", "jpeg", ["65500 pixels per side", "format=png"]),
    (1, 65_501, "heatmap", "jpeg", ["65500 pixels per side", "format=png"]),
    (32_751, 1, "side", "jpeg", ["65502x1 picture", "format=png"]),
    (100_000, 10, "heatmap", "jpeg", ["65500", "format=png"]),
    (10, 70_000, "heatmap", "jpeg", ["65500", "format=png"]),
    (34_000, 20, "side", "jpeg", ["68000x20 picture", "format=png"]),
    (500_001, 1, "side", "png", ["1000000 pixels per side", "output=heatmap&format=png"]),
    (666_667, 3, "depth", "json", ["2000000 pixels", "npy, png16 or pfm"]),
]


@pytest.mark.parametrize(("width", "height", "output", "fmt", "words"), REFUSED)
def test_answers_over_a_limit_are_refused_before_decoding(spied, width, height, output, fmt, words):
    client, calls = spied
    assert_refused_from_header(post(client, png(width, height), output, fmt), calls, words)


def test_a_side_over_the_input_limit_is_413_naming_it(spied):
    client, calls = spied
    response = post(client, png(1_000_001, 1), "depth", "npy")
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "too_large" and "each side is limited to 1000000" in error["message"]
    assert calls == {"decode": 0, "infer": 0}


def test_exif_rotation_is_counted_from_the_header(spied):
    """Stored 20 wide and 32,751 high, displayed 32,751 wide: its side-by-side is too wide."""
    client, calls = spied
    assert_refused_from_header(
        post(client, rotated_jpeg(20, 32_751), "side", "jpeg"), calls, ["65502x20 picture"]
    )
    answer = delivered(post(client, rotated_jpeg(20, 32_750), "side", "jpeg"), "side", "jpeg")
    assert answer.shape == (20, 65_500, 3)


# ---- through a real Gunicorn ------------------------------------------------------------------


def infer_count(base: str) -> float:
    text = requests.get(f"{base}/metrics", timeout=10).text
    found = re.search(r'^midas_stage_seconds_count\{stage="infer"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_limits_through_gunicorn(model_path, tmp_path):
    with gunicorn(model_path, tmp_path, workers=1) as (base, _):
        url = f"{base}/predict"
        raw = {"Content-Type": "image/png"}
        before = infer_count(base)
        for width, height, output in [(100_000, 10, "heatmap"), (34_000, 20, "side")]:
            params = {"output": output, "format": "jpeg"}
            refused = requests.post(url, data=png(width, height), params=params, headers=raw)
            assert refused.status_code == 400
            body = refused.json()
            assert body["error"]["code"] == "output_too_large" and body["request_id"]
            assert "65500 pixels per side" in body["error"]["message"]
            assert "format=png" in body["error"]["message"]
            assert "infer" not in refused.headers["Server-Timing"]
        assert infer_count(base) == before  # no inference spent on either refusal

        for width, output, fmt in [(32_750, "side", "jpeg"), (34_000, "side", "png")]:
            params = {"output": output, "format": fmt}
            answer = requests.post(url, data=png(width, 20), params=params, headers=raw)
            assert answer.status_code == 200 and answer.headers["Content-Type"] == f"image/{fmt}"
            picture = cv2.imdecode(np.frombuffer(answer.content, np.uint8), cv2.IMREAD_COLOR)
            assert picture.shape == (20, 2 * width, 3)
        assert infer_count(base) == before + 2
