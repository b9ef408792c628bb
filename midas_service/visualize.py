"""Depth maps to pictures: min-max scaling, OpenCV colormaps, side-by-side."""

from __future__ import annotations

import cv2
import numpy as np

COLORMAPS: dict[str, int | None] = {
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "turbo": cv2.COLORMAP_TURBO,
    "plasma": cv2.COLORMAP_PLASMA,
    "gray": None,
}
DEFAULT_COLORMAP = "inferno"


def normalize(depth: np.ndarray, top: int, dtype: type) -> np.ndarray:
    """Min-max scale to 0..top; a constant map becomes all zeros instead of dividing by zero."""
    low, high = float(depth.min()), float(depth.max())
    span = high - low
    if span <= 0 or not np.isfinite(span):
        return np.zeros(depth.shape, dtype=dtype)
    scaled = (depth - low) * (top / span)
    return np.rint(scaled).astype(dtype)


def heatmap(depth: np.ndarray, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """(H, W) depth -> (H, W, 3) uint8 BGR picture; near (large values) is bright."""
    gray = normalize(depth, 255, np.uint8)
    code = COLORMAPS[colormap]
    if code is None:
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    return cv2.applyColorMap(gray, code)


def side_by_side(rgb: np.ndarray, heat_bgr: np.ndarray) -> np.ndarray:
    """Input photo (RGB, uint8 or float in [0,1]) beside its heatmap, as one BGR picture."""
    if rgb.dtype != np.uint8:
        rgb = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.hstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), heat_bgr])
