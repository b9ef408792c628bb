"""The assumed pinhole camera of a photo: square pixels, principal point at the centre.

Conventions are glTF's: right-handed, +X right, +Y up, the camera at the origin looking down
-Z, so image row 0 is the top (+Y) and a point at depth ``d`` has ``z = -d``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_FOV_DEG = 60.0
# The diagonal of a 36 x 24 mm frame: EXIF's "35 mm equivalent" focal length is the one giving
# a 36 x 24 mm frame the photo's angle of view, which is defined along the diagonal.
FRAME_35MM_DIAGONAL_MM = math.hypot(36.0, 24.0)


@dataclass(frozen=True)
class Pinhole:
    """Intrinsics in pixels of the decoded photo (``width`` x ``height``)."""

    width: int
    height: int
    focal: float  # fx = fy
    cx: float
    cy: float

    @property
    def horizontal_fov_deg(self) -> float:
        return math.degrees(2 * math.atan(self.width / (2 * self.focal)))

    @property
    def vertical_fov_deg(self) -> float:
        return math.degrees(2 * math.atan(self.height / (2 * self.focal)))


def pinhole(width: int, height: int, fov_deg: float = DEFAULT_FOV_DEG) -> Pinhole:
    """The camera whose horizontal angle of view across ``width`` pixels is ``fov_deg``."""
    if not 0 < fov_deg < 180:
        raise ValueError(f"fov must be between 0 and 180 degrees (exclusive); got {fov_deg}")
    focal = (width / 2) / math.tan(math.radians(fov_deg) / 2)
    return Pinhole(width, height, focal, width / 2, height / 2)


def fov_from_35mm(focal_35mm: float, width: int, height: int) -> float:
    """Horizontal angle of view (degrees) of a ``width`` x ``height`` photo from its EXIF
    ``FocalLengthIn35mmFilm``.

    The equivalent focal length fixes the diagonal angle; the horizontal one follows from the
    photo's own aspect, so portrait photos and 4:3 phone pictures come out right too. For a
    3:2 landscape photo this is the familiar ``2 * atan(36 / (2 * f35))``.
    """
    if focal_35mm <= 0:
        raise ValueError(f"a 35 mm equivalent focal length must be positive; got {focal_35mm}")
    half_diagonal = math.atan(FRAME_35MM_DIAGONAL_MM / (2 * focal_35mm))
    share = width / math.hypot(width, height)
    return math.degrees(2 * math.atan(math.tan(half_diagonal) * share))
