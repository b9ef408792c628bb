"""Triangles over the vertex grid, without the ones that bridge a depth discontinuity.

Each grid cell is two triangles, wound counter-clockwise as seen from the camera (so their
front faces it, as glTF expects). A triangle is dropped when the largest depth of its three
corners exceeds the smallest by more than :func:`edge_ratio` allows: such a triangle joins a
foreground object to the background behind it, a "rubber sheet" that is no surface at all.
"""

from __future__ import annotations

import numpy as np

# The headroom over the steepest smooth slope, see edge_ratio.
SLOPE_HEADROOM = 3.0
MIN_EDGE_RATIO = 1.05


def edge_ratio(near: float, far: float, cells: int) -> float:
    """The largest max/min depth ratio a kept triangle may have.

    A surface that sweeps the whole near..far range across the whole grid (``cells`` steps,
    linear in inverse depth) has neighbouring vertices at most ``1 + (far/near - 1) / cells``
    apart in depth ratio, at its far end. Three times that step (a triangle spans up to two
    steps, plus headroom) is still a surface; a larger jump within one triangle is an edge.
    So a coarser grid or a deeper scene tolerates larger steps, and a grid of 512 with the
    default near=1, far=10 drops triangles whose depths differ by more than about 5 %.
    """
    slope = (far / near - 1.0) / max(cells, 1)
    return max(MIN_EDGE_RATIO, 1.0 + SLOPE_HEADROOM * slope)


def grid_triangles(rows: int, columns: int) -> np.ndarray:
    """(2 (rows-1) (columns-1), 3) vertex indices of a row-major grid, counter-clockwise seen
    from the camera (+X right, +Y up: row 0 on top)."""
    index = np.arange(rows * columns, dtype=np.uint32).reshape(rows, columns)
    top_left = index[:-1, :-1].ravel()
    top_right = index[:-1, 1:].ravel()
    bottom_left = index[1:, :-1].ravel()
    bottom_right = index[1:, 1:].ravel()
    upper = np.stack([top_left, bottom_left, top_right], axis=1)
    lower = np.stack([top_right, bottom_left, bottom_right], axis=1)
    return np.concatenate([upper, lower]).astype(np.uint32, copy=False)


def continuous_triangles(triangles: np.ndarray, depth: np.ndarray, max_ratio: float) -> np.ndarray:
    """The ``triangles`` whose corners' depths (``depth``, flat per vertex) stay within
    ``max_ratio`` of each other."""
    corners = depth.ravel()[triangles]
    keep = corners.max(axis=1) <= max_ratio * corners.min(axis=1)
    return triangles[keep]
