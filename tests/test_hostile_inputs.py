"""Hostile and odd uploads to POST /predict, every one generated here (no binary fixtures).

A refusal is always a JSON 4xx ``{"error": {"code", "message"}, "request_id"}`` (never a 500 or a
traceback), and the service still answers a good photo right after it. Odd but valid images give
200 with a heatmap of the input's size.
"""

from __future__ import annotations

import io
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

MB = 1024 * 1024  # the `client` app allows 2 MB uploads and 24,000,000 pixels
U415 = "unsupported_media_type"
PHOTO = (np.indices((48, 64, 3)).sum(axis=0) * 2).astype(np.uint8)  # BGR, 64 wide x 48 high


def cv_bytes(ext: str, image: np.ndarray, *params: int) -> bytes:
    ok, buffer = cv2.imencode(ext, image, list(params))
    assert ok
    return buffer.tobytes()


def pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed RGB PNG (valid CRCs) whose IHDR says width x height; IDAT holds one pixel."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunks = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 4))
    return b"\x89PNG\r\n\x1a\n" + chunks + png_chunk(b"IEND", b"")


def tiff_claiming(width: int, height: int) -> bytes:
    """Little-endian 8-bit grayscale TIFF header + IFD declaring width x height, no pixel data."""
    tags = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
            (262, 3, 1, 1), (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, height),
            (279, 4, 1, (width * height) & 0xFFFFFFFF)]  # fmt: skip
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) for t in tags)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)


def bmp_claiming(width: int, height: int) -> bytes:
    """BITMAPFILEHEADER + BITMAPINFOHEADER (24-bit) declaring width x height, no pixel data."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + info


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real baseline JPEG with its SOF0 frame size patched to width x height."""
    data = bytearray(cv_bytes(".jpg", PHOTO))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_claiming(width: int, height: int) -> bytes:
    """A real lossy WebP with its VP8 key-frame size patched to width x height."""
    data = bytearray(cv_bytes(".webp", PHOTO, cv2.IMWRITE_WEBP_QUALITY, 80))
    start = data.index(b"\x9d\x01\x2a") + 3  # the key-frame start code
    data[start : start + 4] = struct.pack("<HH", width, height)
    return bytes(data)


def png_with_ztxt_bomb() -> bytes:
    """A valid 1x1 PNG carrying a zTXt chunk that inflates to 16 MB (Pillow refuses > 1 MB)."""
    png = png_claiming(1, 1)
    ztxt = png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(bytes(16 * MB), 9))
    return png[:33] + ztxt + png[33:]  # after the signature and IHDR


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return pil_bytes(RGB, "JPEG", exif=exif)


RGB = Image.fromarray(PHOTO[..., ::-1])
JPEG = cv_bytes(".jpg", PHOTO)
PROGRESSIVE = cv_bytes(".jpg", PHOTO, cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
PNG = cv_bytes(".png", PHOTO)
WEBP = cv_bytes(".webp", PHOTO)


@pytest.fixture(scope="module")
def good_jpeg() -> bytes:
    from skimage import data

    return cv_bytes(".jpg", cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR))


def post(client, body: bytes, *, content_type: str | None = None, field: str = "image", query=""):
    """Multipart upload of ``body`` as photo.jpg, or a raw body when ``content_type`` is given."""
    if content_type is not None:
        return client.post(f"/predict{query}", data=body, content_type=content_type)
    form = {field: (io.BytesIO(body), "photo.jpg", "image/jpeg")}
    return client.post(f"/predict{query}", data=form, content_type="multipart/form-data")


def heatmap_size(response) -> tuple[int, int]:
    """(width, height) of the JPEG heatmap in a 200 response."""
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "image/jpeg"
    picture = cv2.imdecode(np.frombuffer(response.data, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None
    return picture.shape[1], picture.shape[0]


def assert_refused(client, good_jpeg: bytes, response, status: int, code: str) -> None:
    """The JSON error contract, then a good photo still gets a heatmap."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, text
    assert response.mimetype == "application/json"
    assert "Traceback" not in text
    body = response.get_json()
    assert set(body) == {"error", "request_id"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["request_id"], str)
    assert body["request_id"] == response.headers["X-Request-ID"] != ""
    assert heatmap_size(post(client, good_jpeg)) == (451, 300)


NOT_IMAGES = {
    "html": b"<!doctype html><html><body><script>alert(1)</script></body></html>",
    "svg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
    "gif": pil_bytes(RGB, "GIF"),
    "text-named-jpg": b"this is not a photo, whatever its name says\n",
    "pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
    "random-bytes": np.random.default_rng(0).bytes(4096),
    "riff-wave": b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(28),
    "jpeg-magic-only-2-bytes": b"\xff\xd8",
}


@pytest.mark.parametrize("body", NOT_IMAGES.values(), ids=NOT_IMAGES.keys())
def test_not_an_image_by_content_is_415(client, good_jpeg, body):
    response = post(client, body)
    assert_refused(client, good_jpeg, response, 415, U415)


# OpenCV 5.0 (libjpeg-turbo 3.1) returns None for a JPEG cut short, baseline or progressive,
# instead of filling the missing rows with gray, so a truncated JPEG is refused, not recovered.
UNDECODABLE = {
    "jpeg-cut-at-95pct": JPEG[: len(JPEG) * 95 // 100],
    "jpeg-cut-at-50pct": JPEG[: len(JPEG) // 2],
    "progressive-jpeg-cut-at-60pct": PROGRESSIVE[: len(PROGRESSIVE) * 6 // 10],
    "jpeg-soi-marker-only": b"\xff\xd8\xff",
    "png-cut-at-60pct": PNG[: len(PNG) * 6 // 10],
    "png-idat-bad-crc": PNG[:-20] + bytes(8) + PNG[-12:],
    "png-0x0-ihdr": png_claiming(0, 0),
    "webp-cut-at-60pct": WEBP[: len(WEBP) * 6 // 10],
    "bmp-header-no-pixels": bmp_claiming(2, 2),
    "bmp-magic-then-garbage": b"BM" + np.random.default_rng(1).bytes(200),
    "png-ztxt-inflates-to-16mb": png_with_ztxt_bomb(),
}


@pytest.mark.parametrize("body", UNDECODABLE.values(), ids=UNDECODABLE.keys())
def test_truncated_or_corrupt_image_is_400(client, good_jpeg, body):
    response = post(client, body)
    assert_refused(client, good_jpeg, response, 400, "undecodable_image")


PIXEL_BOMBS = {
    "png-ihdr-100000x100000": png_claiming(100_000, 100_000),
    "png-ihdr-8000x8000": png_claiming(8000, 8000),  # under Pillow's bomb limit, over ours
    "jpeg-sof-65500x65500": jpeg_claiming(65_500, 65_500),
    "tiff-ifd-100000x100000": tiff_claiming(100_000, 100_000),
    "tiff-ifd-10000x10000": tiff_claiming(10_000, 10_000),
    "bmp-100000x100000": bmp_claiming(100_000, 100_000),
    "bmp-top-down-100000x100000": bmp_claiming(100_000, -100_000),
    "webp-vp8-16383x16383": webp_claiming(16383, 16383),
    "webp-vp8-10000x10000": webp_claiming(10_000, 10_000),
}


@pytest.mark.parametrize("body", PIXEL_BOMBS.values(), ids=PIXEL_BOMBS.keys())
def test_header_with_too_many_pixels_is_413_before_decoding(client, good_jpeg, body):
    start = time.perf_counter()
    response = post(client, body)
    assert time.perf_counter() - start < 1.0  # refused from the header, nothing allocated
    assert_refused(client, good_jpeg, response, 413, "too_large")


@pytest.mark.parametrize(
    ("size", "content_type"),
    [(2 * MB + 1, "image/jpeg"), (2 * MB + 1, None), (3 * MB, "image/jpeg"), (3 * MB, None)],
    ids=["raw-just-over", "multipart-just-over", "raw-3mb", "multipart-3mb"],
)
def test_upload_over_the_byte_limit_is_413(client, good_jpeg, size, content_type):
    body = JPEG + bytes(size - len(JPEG))
    response = post(client, body, content_type=content_type)
    assert_refused(client, good_jpeg, response, 413, "too_large")


BAD_REQUESTS = {  # id: (post() arguments, status, error code)
    "empty-multipart": ({"body": b""}, 400, "empty_image"),
    "empty-raw": ({"body": b"", "content_type": "image/jpeg"}, 400, "empty_image"),
    "text-plain": ({"content_type": "text/plain"}, 415, U415),
    "json": ({"content_type": "application/json"}, 415, U415),
    "form-urlencoded": ({"content_type": "application/x-www-form-urlencoded"}, 415, U415),
    "multipart-no-image-field": ({"field": "file"}, 400, "missing_image"),
    "output": ({"query": "?output=hologram"}, 400, "bad_parameter"),
    "format": ({"query": "?format=gif"}, 400, "bad_parameter"),
    "format-wrong-for-depth": ({"query": "?output=depth&format=jpeg"}, 400, "bad_parameter"),
    "colormap": ({"query": "?colormap=rainbow"}, 400, "bad_parameter"),
    "nul-colormap": ({"query": "?colormap=%00"}, 400, "bad_parameter"),
    "huge-format": ({"query": "?format=" + "x" * 5000}, 400, "bad_parameter"),
}


@pytest.mark.parametrize(("args", "status", "code"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_request_is_refused(client, good_jpeg, args, status, code):
    response = post(client, **{"body": JPEG, **args})
    assert_refused(client, good_jpeg, response, status, code)


WIDE = np.tile(PHOTO[:1, :1], (1, 5000, 1))
ODD = {  # each upload with the (width, height) its heatmap must have
    "png-1x1": (cv_bytes(".png", PHOTO[:1, :1]), (1, 1)),
    "crafted-png-1x1": (png_claiming(1, 1), (1, 1)),
    "png-1x5000": (cv_bytes(".png", WIDE.transpose(1, 0, 2)), (1, 5000)),
    "png-5000x1": (cv_bytes(".png", WIDE), (5000, 1)),
    "png-16bit": (cv_bytes(".png", PHOTO.astype(np.uint16) * 257), (64, 48)),
    "png-16bit-gray": (cv_bytes(".png", PHOTO[..., 0].astype(np.uint16) * 257), (64, 48)),
    "jpeg-gray": (cv_bytes(".jpg", PHOTO[..., 1]), (64, 48)),
    "png-rgba": (cv_bytes(".png", cv2.cvtColor(PHOTO, cv2.COLOR_BGR2BGRA)), (64, 48)),
    "png-palette": (pil_bytes(RGB.convert("P"), "PNG"), (64, 48)),
    "jpeg-cmyk": (pil_bytes(RGB.convert("CMYK"), "JPEG"), (64, 48)),
    "jpeg-progressive": (PROGRESSIVE, (64, 48)),
    "webp": (WEBP, (64, 48)),
    "bmp": (cv_bytes(".bmp", PHOTO), (64, 48)),
    "tiff": (cv_bytes(".tiff", PHOTO), (64, 48)),
    "jpeg-exif-orientation-6": (exif_rotated_jpeg(), (48, 64)),  # OpenCV applies the EXIF
}


@pytest.mark.parametrize(("body", "size"), ODD.values(), ids=ODD.keys())
def test_odd_but_valid_image_gives_heatmap_of_its_size(client, body, size):
    assert heatmap_size(post(client, body)) == size
    assert heatmap_size(post(client, body, content_type="application/octet-stream")) == size
