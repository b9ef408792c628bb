"""The parameters of a 3D answer and their limits, checked the same way for the web and CLI."""

from __future__ import annotations

import math

from midas_service.geometry.grid import MAX_GRID_SIDE, MIN_GRID_SIDE

PARAMETERS = ("fov", "near", "far", "max_side")


class BadView(ValueError):
    """A 3D parameter out of its range; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


def check_view(fov: float | None, near: float, far: float, max_side: int) -> None:
    """Raise :class:`BadView` for the first parameter out of range (``fov=None``: from EXIF)."""
    if fov is not None and not (math.isfinite(fov) and 0 < fov < 180):
        raise BadView("fov", f"fov must be an angle in degrees between 0 and 180; got {fov:g}")
    if not (math.isfinite(near) and near > 0):
        raise BadView("near", f"near must be a positive number; got {near:g}")
    if not math.isfinite(far):
        raise BadView("far", f"far must be a finite number; got {far:g}")
    if not near < far:
        raise BadView("far", f"near must be less than far; got near={near:g}, far={far:g}")
    if not MIN_GRID_SIDE <= max_side <= MAX_GRID_SIDE:
        raise BadView(
            "max_side",
            f"max_side must be a whole number from {MIN_GRID_SIDE} to {MAX_GRID_SIDE}; "
            f"got {max_side}",
        )
