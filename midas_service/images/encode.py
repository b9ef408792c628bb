"""Encoders from arrays to response/file bytes, and readers for the raw depth formats."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np

from midas_service.images.visualize import normalize

JPEG_QUALITY = 90


def encode_picture(bgr: np.ndarray, fmt: str) -> bytes:
    """BGR uint8 picture -> JPEG or PNG bytes."""
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if fmt == "jpeg" else []
    ok, buffer = cv2.imencode(f".{'jpg' if fmt == 'jpeg' else 'png'}", bgr, params)
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
