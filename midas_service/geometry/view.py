"""The parameters of a 3D answer and their limits, checked the same way for the web and CLI.

The ranges keep every number of the files finite and meaningful: a vertex is at most
``tan(FOV_MAX_DEG / 2) * FAR_MAX`` (about 1.2e8) from the camera, far inside float32, and
``near`` is a normal float32 well above its underflow. The units are the caller's.

| parameter  | range                          |
|------------|--------------------------------|
| fov        | FOV_MIN_DEG ... FOV_MAX_DEG     |
| near       | NEAR_MIN ... below far          |
| far        | above near ... FAR_MAX          |
| max_side   | MIN_GRID_SIDE ... MAX_GRID_SIDE |
"""

from __future__ import annotations

import math

from midas_service.geometry.grid import MAX_GRID_SIDE, MIN_GRID_SIDE

PARAMETERS = ("fov", "near", "far", "max_side")
FOV_MIN_DEG = 1.0
FOV_MAX_DEG = 179.0
NEAR_MIN = 1e-6
FAR_MAX = 1e6


class BadView(ValueError):
    """A 3D parameter out of its range; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


def check_view(fov: float | None, near: float, far: float, max_side: int) -> None:
    """Raise :class:`BadView` for the first parameter out of range (``fov=None``: from EXIF)."""
    if fov is not None and not (math.isfinite(fov) and FOV_MIN_DEG <= fov <= FOV_MAX_DEG):
        raise BadView(
            "fov",
            f"fov must be an angle in degrees from {FOV_MIN_DEG:g} to {FOV_MAX_DEG:g}; got {fov:g}",
        )
    if not (math.isfinite(near) and NEAR_MIN <= near < FAR_MAX):
        raise BadView("near", f"near must be from {NEAR_MIN:g} to below {FAR_MAX:g}; got {near:g}")
    if not (math.isfinite(far) and far <= FAR_MAX):
        raise BadView("far", f"far must be a number up to {FAR_MAX:g}; got {far:g}")
    if not near < far:
        raise BadView("far", f"near must be less than far; got near={near:g}, far={far:g}")
    if not MIN_GRID_SIDE <= max_side <= MAX_GRID_SIDE:
        raise BadView(
            "max_side",
            f"max_side must be a whole number from {MIN_GRID_SIDE} to {MAX_GRID_SIDE}; "
            f"got {max_side}",
        )


def clamp_fov(fov: float) -> float:
    """An angle read from a photo's EXIF, held to the range a caller may give: a 35 mm
    equivalent focal length of up to 65,535 mm would otherwise mean a few hundredths of
    a degree."""
    return min(max(fov, FOV_MIN_DEG), FOV_MAX_DEG)
