"""JPEG encoding split into horizontal bands on several threads, spliced into one file.

The encoder writes a restart marker after every row of MCUs (16 x 16 pixels at 4:2:0): a
restart resets the DC predictions, so a band of whole MCU rows is coded exactly as it would be
inside the whole picture, with the same quantisation and standard Huffman tables. Bands
encoded apart and spliced (the first band's headers with the full height, then each band's
coded data with its restart markers renumbered) are therefore byte for byte the file one
encoder writes for the whole picture, whatever the thread count; and the decoded pixels are
those of the same encode without restart markers. Each band is also painted on its thread
(a colormap, say: ``rows``). OpenCV releases the GIL while it paints and encodes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

MCU_SIDE = 16  # 4:2:0 chroma subsampling, set explicitly below
MIN_BAND_PIXELS = 65_536  # below this a thread hand-off costs more than the band's encode
SOI, SOS, EOI = 0xD8, 0xDA, 0xD9
START_OF_FRAME = (0xC0, 0xC1, 0xC2)  # baseline, extended, progressive
RESTART_0 = 0xD0  # RST0..RST7 cycle through 0xD0..0xD7

MAX_BANDS = 64  # threads start only as bands need them
_pool: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool): a forked child makes its own

Rows = Callable[[int, int], np.ndarray]  # (start, stop) -> those rows of a BGR uint8 picture


def params(width: int, quality: int) -> list[int]:
    """OpenCV's JPEG parameters: quality, 4:2:0, one restart interval per MCU row."""
    return [
        cv2.IMWRITE_JPEG_QUALITY,
        quality,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
        cv2.IMWRITE_JPEG_RST_INTERVAL,
        -(-width // MCU_SIDE),
    ]


def encode(rows: Rows, height: int, width: int, quality: int, threads: int) -> bytes:
    """A (height, width) BGR picture painted by ``rows`` -> JPEG bytes, in up to ``threads``
    bands painted and encoded at once."""
    options = params(width, quality)
    mcu_rows = -(-height // MCU_SIDE)
    bands = max(1, min(threads, MAX_BANDS, mcu_rows, height * width // MIN_BAND_PIXELS))
    if bands == 1:
        return _encode(rows(0, height), options)
    band_rows = -(-mcu_rows // bands) * MCU_SIDE
    starts = range(band_rows, height, band_rows)
    pool = _thread_pool()
    later = [pool.submit(_paint_and_encode, rows, start, band_rows, options) for start in starts]
    first = _paint_and_encode(rows, 0, band_rows, options)
    restarts_before = [start // MCU_SIDE for start in starts]
    return splice(first, restarts_before, [band.result() for band in later], height)


def splice(first: bytes, restarts_before: list[int], later: list[bytes], height: int) -> bytes:
    """One JPEG from band files: ``first`` with its height set to ``height``, then each later
    band's coded data, which starts after ``restarts_before`` restart intervals."""
    out = bytearray(first[:-2])  # without EOI
    frame = _segment_offset(first, START_OF_FRAME)
    out[frame + 5 : frame + 7] = height.to_bytes(2, "big")  # length(2), precision(1), height(2)
    for intervals, band in zip(restarts_before, later, strict=True):
        out += bytes((0xFF, RESTART_0 + (intervals - 1) % 8))
        out += _renumbered_restarts(band[_scan_data_offset(band) : -2], intervals)
    out += bytes((0xFF, EOI))
    return bytes(out)


def _paint_and_encode(rows: Rows, start: int, count: int, options: list[int]) -> bytes:
    return _encode(rows(start, start + count), options)


def _encode(bgr: np.ndarray, options: list[int]) -> bytes:
    ok, buffer = cv2.imencode(".jpg", bgr, options)
    if not ok:
        raise ValueError("OpenCV could not encode a jpeg picture")
    return buffer.tobytes()


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(MAX_BANDS - 1, thread_name_prefix="jpeg-band"))
    return _pool[1]


def _segment_offset(jpeg: bytes, markers: tuple[int, ...]) -> int:
    """Offset of the first header segment with one of ``markers``, before the scan."""
    offset = 2  # after SOI
    while True:
        if jpeg[offset] != 0xFF:
            raise ValueError("not a JPEG header")
        marker = jpeg[offset + 1]
        if marker in markers:
            return offset
        if marker == SOS:
            raise ValueError("no such JPEG segment before the scan")
        offset += 2 + int.from_bytes(jpeg[offset + 2 : offset + 4], "big")


def _scan_data_offset(jpeg: bytes) -> int:
    """Offset of the first byte of coded data, just after the start-of-scan header."""
    sos = _segment_offset(jpeg, (SOS,))
    return sos + 2 + int.from_bytes(jpeg[sos + 2 : sos + 4], "big")


def _renumbered_restarts(data: bytes, shift: int) -> bytes:
    """Coded data with each RSTn marker moved ``shift`` places on (mod 8). Inside coded data a
    0xFF byte is followed by 0x00 (stuffing) or a marker, so 0xFF 0xD0-0xD7 is always RSTn."""
    values = np.frombuffer(data, np.uint8).copy()
    markers = np.flatnonzero((values[:-1] == 0xFF) & ((values[1:] & 0xF8) == RESTART_0)) + 1
    values[markers] = RESTART_0 + (values[markers] - RESTART_0 + shift) % 8
    return values.tobytes()
