"""A JPEG encoded in bands on several threads is the very file one encoder writes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from midas_service.images import encode, jpeg_bands
from midas_service.images.visualize import heatmap
from midas_service.inference import core_share


def picture(height: int, width: int) -> np.ndarray:
    """A real photo's heatmap-like BGR picture of any size (tiled where it is larger)."""
    gray = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY).astype(np.float32)
    tiled = np.tile(gray, (-(-height // 512), -(-width // 512)))[:height, :width]
    return heatmap(tiled)


def in_bands(bgr: np.ndarray, threads: int) -> bytes:
    return jpeg_bands.encode(lambda start, stop: bgr[start:stop], *bgr.shape[:2], 90, threads)


def one_encoder(bgr: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".jpg", bgr, jpeg_bands.params(bgr.shape[1], 90))
    assert ok
    return buffer.tobytes()


@pytest.fixture
def band_count(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many band encodes each ``jpeg_bands.encode`` call made (one entry per band)."""
    calls: list[int] = []
    original = jpeg_bands._encode

    def counted(bgr: np.ndarray, options: list[int]) -> bytes:
        calls.append(bgr.shape[0])
        return original(bgr, options)

    monkeypatch.setattr(jpeg_bands, "_encode", counted)
    return calls


@pytest.mark.parametrize(
    "height, width, threads, bands",
    [
        (480, 640, 2, 2),
        (481, 641, 2, 2),  # neither side a multiple of 16: a short last band
        (1000, 1500, 3, 3),
        (1000, 1500, 7, 7),
        (130, 3000, 4, 3),  # 9 MCU rows: bands of 3 whole rows, so 3 bands
        (48, 4000, 8, 2),  # 192,000 pixels: 2 bands of at least 65,536
        (480, 640, 1, 1),
        (64, 64, 4, 1),  # too small to be worth a thread
    ],
)
def test_bands_splice_into_the_one_encoder_file(height, width, threads, bands, band_count):
    bgr = picture(height, width)
    split = in_bands(bgr, threads)
    assert len(band_count) == bands
    assert sum(band_count) == height
    assert split == one_encoder(bgr)


def test_restart_markers_leave_the_decoded_pixels_unchanged():
    bgr = picture(480, 640)
    plain = cv2.imencode(
        ".jpg",
        bgr,
        [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, 0x221111],
    )[1]
    banded = np.frombuffer(in_bands(bgr, 2), np.uint8)
    decoded = cv2.imdecode(banded, cv2.IMREAD_COLOR)
    assert (decoded == cv2.imdecode(plain, cv2.IMREAD_COLOR)).all()
    # and close to the picture itself (a broken splice decodes to grey or shifted blocks);
    # q90 at 4:2:0 on this detailed, saturated picture is off by about 4 on average
    assert np.abs(decoded.astype(int) - bgr).mean() < 8.0


def test_a_worker_encodes_on_every_core_alone_and_on_its_share_otherwise(
    monkeypatch: pytest.MonkeyPatch, band_count: list[int]
):
    monkeypatch.setattr(encode, "_cores", lambda: 2)
    bgr = picture(480, 640)
    monkeypatch.setattr(core_share, "computing_elsewhere", lambda: 0)
    alone = encode.encode_picture(bgr, "jpeg")
    assert len(band_count) == 2
    band_count.clear()
    monkeypatch.setattr(core_share, "computing_elsewhere", lambda: 1)
    assert encode.encode_picture(bgr, "jpeg") == alone
    assert len(band_count) == 1
