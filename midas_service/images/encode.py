"""Encoders from arrays to response/file bytes, and readers for the raw depth formats."""

from __future__ import annotations

import functools
import io
import json

import cv2
import numpy as np

from midas_service.images import jpeg_bands
from midas_service.images.visualize import normalize
from midas_service.inference import core_share
from midas_service.inference.engines import available_cpus

JPEG_QUALITY = 90
_cores = functools.cache(available_cpus)


def encode_picture(bgr: np.ndarray, fmt: str) -> bytes:
    """BGR uint8 picture -> JPEG or PNG bytes."""
    height, width = bgr.shape[:2]
    return encode_rows(lambda start, stop: bgr[start:stop], height, width, fmt)


def encode_rows(rows: jpeg_bands.Rows, height: int, width: int, fmt: str) -> bytes:
    """A BGR uint8 picture painted band by band by ``rows`` -> JPEG or PNG bytes. A JPEG's
    bands are painted and encoded on this worker's share of the cores (docs/performance.md):
    the same bytes on any number of threads."""
    if fmt == "jpeg":
        threads = core_share.share_of_cores(_cores())
        return jpeg_bands.encode(rows, height, width, JPEG_QUALITY, threads)
    ok, buffer = cv2.imencode(".png", rows(0, height))
    if not ok:
        raise ValueError(f"OpenCV could not encode a {fmt} picture")
    return buffer.tobytes()


def encode_depth(depth: np.ndarray, fmt: str) -> bytes:
    """Raw depth as float32 .npy, min-max 16-bit PNG, PFM or JSON."""
    if fmt == "npy":
        out = io.BytesIO()
        np.save(out, depth.astype(np.float32, copy=False))
        return out.getvalue()
    if fmt == "png16":
        ok, buffer = cv2.imencode(".png", normalize(depth, 65535, np.uint16))
        if not ok:
            raise ValueError("OpenCV could not encode a 16-bit PNG")
        return buffer.tobytes()
    if fmt == "pfm":
        return to_pfm(depth)
    if fmt == "json":
        return to_json(depth)
    raise ValueError(f"unknown depth format {fmt!r}")


def to_pfm(depth: np.ndarray) -> bytes:
    """Grayscale PFM as upstream MiDaS writes it: little-endian, rows stored bottom to top."""
    height, width = depth.shape
    header = f"Pf\n{width} {height}\n-1\n".encode("ascii")
    rows = np.flipud(depth).astype("<f4")
    return header + rows.tobytes()


def from_pfm(data: bytes) -> np.ndarray:
    """Inverse of :func:`to_pfm` (either endianness), for tests and clients."""
    magic, size, scale, body = data.split(b"\n", 3)
    if magic != b"Pf":
        raise ValueError("not a grayscale PFM")
    width, height = (int(v) for v in size.split())
    dtype = "<f4" if float(scale) < 0 else ">f4"
    values = np.frombuffer(body, dtype=dtype, count=width * height)
    return np.flipud(values.reshape(height, width)).astype(np.float32)


def to_json(depth: np.ndarray) -> bytes:
    """Nested rows plus the range, for clients that only read JSON."""
    document = {
        "width": int(depth.shape[1]),
        "height": int(depth.shape[0]),
        "min": float(depth.min()),
        "max": float(depth.max()),
        "depth": depth.astype(np.float32).tolist(),
    }
    return json.dumps(document, separators=(",", ":")).encode()
