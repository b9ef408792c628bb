"""Depth maps to pictures: min-max scaling, OpenCV colormaps, side-by-side."""

from __future__ import annotations

import functools

import cv2
import numpy as np

from midas_service.images.colormap_names import COLORMAP_NAMES, DEFAULT_COLORMAP

# Name -> OpenCV colormap code; None = gray (no colormap).
COLORMAPS: dict[str, int | None] = {
    name: None if name == "gray" else getattr(cv2, f"COLORMAP_{name.upper()}")
    for name in COLORMAP_NAMES
}


CV_DEPTHS: dict[type, int] = {np.uint8: cv2.CV_8U, np.uint16: cv2.CV_16U}


def normalize(depth: np.ndarray, top: int, dtype: type) -> np.ndarray:
    """Min-max scale to 0..top (rounded); a constant map becomes all zeros.

    One OpenCV pass, no float temporaries: a 40 MP map would need 160 MB for each.
    """
    low, high, _, _ = cv2.minMaxLoc(depth)
    span = high - low
    if span <= 0 or not np.isfinite(span):
        return np.zeros(depth.shape, dtype=dtype)
    # OpenCV's stubs have no overload for dst=None, which makes it allocate the output.
    return cv2.normalize(depth, None, 0, top, cv2.NORM_MINMAX, dtype=CV_DEPTHS[dtype])  # type: ignore[call-overload]


def heatmap(depth: np.ndarray, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """(H, W) depth -> (H, W, 3) uint8 BGR picture; near (large values) is bright."""
    return colorize(normalize(depth, 255, np.uint8), colormap)


def colorize(gray: np.ndarray, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """(H, W) uint8 -> (H, W, 3) uint8 BGR through the colormap (gray: the same values)."""
    code = COLORMAPS[colormap]
    if code is None:
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    return cv2.applyColorMap(gray, colormap_table(code))


@functools.cache
def colormap_table(code: int) -> np.ndarray:
    """OpenCV's colormap ``code`` as its 256 BGR colours. Given a code, ``applyColorMap``
    builds this table again on every call: 0.41 against 0.27 ms for a 640x480 heatmap here."""
    return cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], code).reshape(256, 1, 3)


def side_by_side(rgb: np.ndarray, heat_bgr: np.ndarray) -> np.ndarray:
    """Input photo (RGB, uint8 or float in [0,1]) beside its heatmap, as one BGR picture."""
    if rgb.dtype != np.uint8:
        rgb = cv2.convertScaleAbs(rgb, alpha=255.0)  # rounds and saturates in one pass
    return np.hstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), heat_bgr])


def heatmap_range(
    depth: np.ndarray, low: float, high: float, colormap: str = DEFAULT_COLORMAP
) -> np.ndarray:
    """Like ``heatmap`` but with a given (low, high) instead of the map's own min and max:
    values outside are clamped, so a video can keep one colour scale across frames."""
    span = float(high) - float(low)
    if span <= 0 or not np.isfinite(span):
        gray = np.zeros(depth.shape, dtype=np.uint8)
    else:
        scaled = np.subtract(depth, np.float32(low), dtype=np.float32)
        scaled *= np.float32(255.0 / span)
        np.clip(scaled, 0.0, 255.0, out=scaled)
        gray = np.rint(scaled, out=scaled).astype(np.uint8)
    return colorize(gray, colormap)
