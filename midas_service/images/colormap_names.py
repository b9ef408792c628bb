"""The colormap names, without OpenCV: the configuration (and so the Gunicorn master) checks
MIDAS_COLORMAP against them, and the master must not load cv2 (gunicorn.conf.py)."""

from __future__ import annotations

# "gray" is the normalised depth itself; every other name is OpenCV's cv2.COLORMAP_<NAME>.
COLORMAP_NAMES: tuple[str, ...] = ("inferno", "magma", "viridis", "turbo", "plasma", "gray")
DEFAULT_COLORMAP = "inferno"
