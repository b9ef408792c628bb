"""The ranges of a 3D answer's options (``midas_service.options`` declares them with these).

The ranges keep every number of the files finite and meaningful: a vertex is at most
``tan(FOV_MAX_DEG / 2) * FAR_MAX`` (about 1.2e8) from the camera, far inside float32, and
``near`` is a normal float32 well above its underflow. The units are the caller's.

| parameter  | range                          |
|------------|--------------------------------|
| fov        | FOV_MIN_DEG ... FOV_MAX_DEG     |
| near       | NEAR_MIN ... below far          |
| far        | above near ... FAR_MAX          |
| grid_side  | MIN_GRID_SIDE ... MAX_GRID_SIDE |
"""

from __future__ import annotations

FOV_MIN_DEG = 1.0
FOV_MAX_DEG = 179.0
NEAR_MIN = 1e-6
FAR_MAX = 1e6


def clamp_fov(fov: float) -> float:
    """An angle read from a photo's EXIF, held to the range a caller may give: a 35 mm
    equivalent focal length of up to 65,535 mm would otherwise mean a few hundredths of
    a degree."""
    return min(max(fov, FOV_MIN_DEG), FOV_MAX_DEG)
