"""A photo and its relative inverse depth -> the coloured, textured grid surface in 3D."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from midas_service.geometry.camera import DEFAULT_FOV_DEG, Pinhole, pinhole
from midas_service.geometry.depth import DEFAULT_FAR, DEFAULT_NEAR, depth_from_inverse
from midas_service.geometry.grid import (
    DEFAULT_MAX_SIDE,
    Grid,
    back_project,
    make_grid,
    sample,
    texture_coordinates,
)
from midas_service.geometry.mesh import continuous_triangles, edge_ratio, grid_triangles


@dataclass(frozen=True)
class Surface:
    """One vertex per grid point, row-major (row 0 = top of the photo)."""

    points: np.ndarray  # (N, 3) float32, glTF axes
    colours: np.ndarray  # (N, 3) uint8 RGB, the photo's pixels at the grid points
    uv: np.ndarray  # (N, 2) float32, glTF texture coordinates into the whole photo
    triangles: np.ndarray  # (M, 3) uint32, those that span no depth discontinuity
    grid: Grid
    camera: Pinhole
    near: float
    far: float


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """float RGB in [0, 1] -> uint8; exact for photos decoded from 8 bits (kept as uint8)."""
    if rgb.dtype == np.uint8:
        return rgb
    return np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def build_surface(
    rgb: np.ndarray,
    inverse_depth: np.ndarray,
    fov: float = DEFAULT_FOV_DEG,
    near: float = DEFAULT_NEAR,
    far: float = DEFAULT_FAR,
    max_side: int = DEFAULT_MAX_SIDE,
    with_triangles: bool = True,
) -> Surface:
    """The grid surface of ``rgb`` (H, W, 3 float in [0, 1]) with ``inverse_depth`` (H, W).

    The depth rule normalises over the whole map, not only the grid's pixels, so the grid's
    density does not move the near and far planes.
    """
    height, width = inverse_depth.shape
    camera = pinhole(width, height, fov)
    grid = make_grid(width, height, max_side)
    span = (float(inverse_depth.min()), float(inverse_depth.max()))
    depth = depth_from_inverse(sample(inverse_depth, grid), near, far, span)
    points = back_project(depth, grid, camera).reshape(-1, 3)
    colours = to_uint8(sample(rgb, grid)).reshape(-1, 3)
    uv = texture_coordinates(grid, width, height).reshape(-1, 2)
    if with_triangles:
        ratio = edge_ratio(near, far, max(grid.width, grid.height) - 1)
        triangles = continuous_triangles(grid_triangles(grid.height, grid.width), depth, ratio)
    else:
        triangles = np.empty((0, 3), dtype=np.uint32)
    return Surface(points, colours, uv, triangles, grid, camera, near, far)
