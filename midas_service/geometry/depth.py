"""From MiDaS's relative inverse depth to depth along the camera axis.

MiDaS predicts inverse depth up to an unknown scale and shift: larger is nearer, and nothing
says how near. The rule here takes the map's own range and places it between two planes the
caller chooses:

1. normalise: ``t = (r - min(r)) / (max(r) - min(r))``, so the farthest point of the map has
   ``t = 0`` and the nearest ``t = 1`` (a flat map has ``t = 0.5`` everywhere);
2. interpolate in inverse depth: ``1/d = 1/far + t * (1/near - 1/far)``.

So the nearest point lands at ``near``, the farthest at ``far``, and because the interpolation
is affine in inverse depth, a surface MiDaS sees as a plane (inverse depth affine in the pixel
coordinates) stays a plane. Units are whatever ``near`` and ``far`` are in.
"""

from __future__ import annotations

import numpy as np

DEFAULT_NEAR = 1.0
DEFAULT_FAR = 10.0


def normalised_inverse(inverse: np.ndarray, span: tuple[float, float] | None = None) -> np.ndarray:
    """``inverse`` scaled to [0, 1] over ``span`` (default: its own range; 0 = farthest), or
    0.5 everywhere if the range is empty."""
    values = inverse.astype(np.float64, copy=False)
    low, high = span if span is not None else (float(values.min()), float(values.max()))
    if not high > low:
        return np.full(values.shape, 0.5)
    return (values - low) / (high - low)


def depth_from_inverse(
    inverse: np.ndarray,
    near: float = DEFAULT_NEAR,
    far: float = DEFAULT_FAR,
    span: tuple[float, float] | None = None,
) -> np.ndarray:
    """Depth (distance along -Z) in [near, far] for a relative inverse-depth map (float64).

    ``span`` is the (min, max) of the whole map when ``inverse`` is only a sample of it.
    """
    if not 0 < near < far:
        raise ValueError(f"need 0 < near < far; got near={near}, far={far}")
    t = normalised_inverse(inverse, span)
    return 1.0 / (1.0 / far + t * (1.0 / near - 1.0 / far))
