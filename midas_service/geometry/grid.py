"""A grid of photo pixels, back-projected through the pinhole into 3D points.

The grid keeps the photo's aspect with at most ``max_side`` vertices per side; each vertex is
one pixel of the photo (the nearest to an even spacing, never an average), so its colour and
depth are that pixel's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from midas_service.geometry.camera import Pinhole

DEFAULT_MAX_SIDE = 512
# 1024 x 1024 vertices is a 15 MB PLY and a ~45 MB GLB; more is slow to send and to view.
MAX_GRID_SIDE = 1024
MIN_GRID_SIDE = 2


@dataclass(frozen=True)
class Grid:
    """Pixel columns ``xs`` and rows ``ys`` of the photo that the vertices sit on."""

    xs: np.ndarray  # int, ascending, len = vertices per row
    ys: np.ndarray  # int, ascending, len = vertices per column

    @property
    def width(self) -> int:
        return len(self.xs)

    @property
    def height(self) -> int:
        return len(self.ys)

    @property
    def size(self) -> int:
        return self.width * self.height


def grid_shape(width: int, height: int, max_side: int = DEFAULT_MAX_SIDE) -> tuple[int, int]:
    """(vertices per row, per column) for a ``width`` x ``height`` photo: its own size if it
    fits in ``max_side``, else scaled down to ``max_side`` on the longer side."""
    scale = min(1.0, max_side / max(width, height))
    return (
        min(width, max(1, round(width * scale))),
        min(height, max(1, round(height * scale))),
    )


def make_grid(width: int, height: int, max_side: int = DEFAULT_MAX_SIDE) -> Grid:
    columns, rows = grid_shape(width, height, max_side)
    xs = np.round(np.linspace(0, width - 1, columns)).astype(np.intp)
    ys = np.round(np.linspace(0, height - 1, rows)).astype(np.intp)
    return Grid(xs, ys)


def sample(image: np.ndarray, grid: Grid) -> np.ndarray:
    """``image`` (H, W, ...) at the grid's pixels: (rows, columns, ...)."""
    return image[np.ix_(grid.ys, grid.xs)]


def back_project(depth: np.ndarray, grid: Grid, camera: Pinhole) -> np.ndarray:
    """(rows, columns, 3) float32 points for the grid's ``depth`` (rows, columns).

    A pixel's ray passes through its centre, ``(x + 0.5, y + 0.5)``; ``depth`` is the distance
    along the camera axis, so ``z = -depth``, and image rows go down while +Y goes up.
    """
    u = (grid.xs + 0.5 - camera.cx) / camera.focal
    v = (grid.ys + 0.5 - camera.cy) / camera.focal
    points = np.empty((*depth.shape, 3), dtype=np.float32)
    points[..., 0] = u[np.newaxis, :] * depth
    points[..., 1] = -v[:, np.newaxis] * depth
    points[..., 2] = -depth
    return points


def texture_coordinates(grid: Grid, width: int, height: int) -> np.ndarray:
    """(rows, columns, 2) float32 glTF UVs of the grid's pixel centres: (0, 0) is the top-left
    corner of the photo, v grows downwards."""
    uv = np.empty((grid.height, grid.width, 2), dtype=np.float32)
    uv[..., 0] = ((grid.xs + 0.5) / width)[np.newaxis, :]
    uv[..., 1] = ((grid.ys + 0.5) / height)[:, np.newaxis]
    return uv
