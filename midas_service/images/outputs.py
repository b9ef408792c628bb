"""Every output kind and format, in one table.

The options (options.py), the output limits (images/output_limits.py), Content-Disposition
(web/api.py), the OpenAPI document and the batch CLI's ``--save`` names all read this module;
adding an output is one ``OutputKind`` here (and a ``Format`` if it brings a new one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from midas_service.geometry.camera import DEFAULT_FOV_DEG
from midas_service.geometry.depth import DEFAULT_FAR, DEFAULT_NEAR
from midas_service.geometry.grid import DEFAULT_MAX_SIDE, MAX_GRID_SIDE, grid_shape
from midas_service.geometry.surface import Surface, build_surface
from midas_service.images import encode, encode3d, visualize

# Part of every result-cache key (web/cache.py): bump it with any change to how answers are
# rendered or encoded (colours, scaling, encoder settings), so a release never serves the bytes
# the previous one cached (Redis keeps them for MIDAS_CACHE_TTL_S).
RENDER_VERSION = 2
JPEG_MAX_SIDE = 65_500  # libjpeg's JPEG_MAX_DIMENSION: OpenCV's encoder fails beyond it
PNG_MAX_SIDE = 1_000_000  # libpng's default user limit, enforced on write (and on read)
# JSON costs ~20 bytes and a Python float per pixel: 2 MP is ~40 MB and ~0.4 s; 36 MP took 18 s
# and 3.5 GB. Larger maps must use npy, png16 or pfm.
JSON_MAX_PIXELS = 2_000_000


@dataclass(frozen=True)
class Format:
    name: str
    media_type: str
    suffix: str  # the file name ending of a download
    download: bool  # answered as an attachment (Content-Disposition)
    max_side: int | None = None  # of the answer's picture
    max_pixels: int | None = None


@dataclass(frozen=True)
class RenderOptions:
    """What decides the bytes of an answer besides the photo and the model."""

    output: str
    format: str
    colormap: str
    # The 3D outputs' camera and depth rule (docs/3d.md); the other outputs ignore them.
    fov: float | None = None  # horizontal degrees; None: from EXIF, else DEFAULT_FOV_DEG
    near: float = DEFAULT_NEAR
    far: float = DEFAULT_FAR
    grid_side: int = DEFAULT_MAX_SIDE  # grid vertices per side, at most


Renderer = Callable[[np.ndarray, np.ndarray, RenderOptions], bytes]


# Pictures are painted band by band while they are encoded (encode.encode_rows).
def _heatmap(rgb: np.ndarray, depth: np.ndarray, options: RenderOptions) -> bytes:
    gray = visualize.normalize(depth, 255, np.uint8)

    def rows(start: int, stop: int) -> np.ndarray:
        return visualize.colorize(gray[start:stop], options.colormap)

    return encode.encode_rows(rows, gray.shape[0], gray.shape[1], options.format)


def _side(rgb: np.ndarray, depth: np.ndarray, options: RenderOptions) -> bytes:
    gray = visualize.normalize(depth, 255, np.uint8)

    def rows(start: int, stop: int) -> np.ndarray:
        heat = visualize.colorize(gray[start:stop], options.colormap)
        return visualize.side_by_side(rgb[start:stop], heat)

    return encode.encode_rows(rows, gray.shape[0], 2 * gray.shape[1], options.format)


def _depth(rgb: np.ndarray, depth: np.ndarray, options: RenderOptions) -> bytes:
    return encode.encode_depth(depth, options.format)


def _surface(rgb: np.ndarray, depth: np.ndarray, options: RenderOptions, mesh: bool) -> Surface:
    fov = DEFAULT_FOV_DEG if options.fov is None else options.fov
    return build_surface(
        rgb, depth, fov, options.near, options.far, options.grid_side, with_triangles=mesh
    )


def _pointcloud(rgb: np.ndarray, depth: np.ndarray, options: RenderOptions) -> bytes:
    return encode3d.to_ply(_surface(rgb, depth, options, mesh=False))


def _mesh(rgb: np.ndarray, depth: np.ndarray, options: RenderOptions) -> bytes:
    return encode3d.to_glb(_surface(rgb, depth, options, mesh=True), encode3d.texture_jpeg(rgb))


def _same_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    return width, height


@dataclass(frozen=True)
class OutputKind:
    name: str
    formats: tuple[str, ...]  # the first is the default
    description: str
    render: Renderer
    # The answer's picture (or vertex grid) size for a photo's width, height and max_side.
    size: Callable[[int, int, int], tuple[int, int]] = _same_size
    geometry: bool = False  # takes the 3D options (fov, near, far, grid_side)

    @property
    def default_format(self) -> str:
        return self.formats[0]


FORMATS: dict[str, Format] = {
    fmt.name: fmt
    for fmt in (
        Format("jpeg", "image/jpeg", ".jpg", False, max_side=JPEG_MAX_SIDE),
        Format("png", "image/png", ".png", False, max_side=PNG_MAX_SIDE),
        Format("npy", "application/x-npy", ".npy", True),
        Format("png16", "image/png", ".png", True, max_side=PNG_MAX_SIDE),
        Format("pfm", "application/x-pfm", ".pfm", True),
        Format("json", "application/json", ".json", False, max_pixels=JSON_MAX_PIXELS),
        # Sized by their vertex grid, which max_side already bounds.
        Format("ply", "application/x-ply", ".ply", True, max_side=MAX_GRID_SIDE),
        Format("glb", "model/gltf-binary", ".glb", True, max_side=MAX_GRID_SIDE),
    )
}

KINDS: dict[str, OutputKind] = {
    kind.name: kind
    for kind in (
        OutputKind(
            "heatmap", ("jpeg", "png"), "the depth map in colour (near is bright)", _heatmap
        ),
        OutputKind("depth", ("npy", "png16", "pfm", "json"), "the raw depth numbers", _depth),
        OutputKind(
            "side",
            ("jpeg", "png"),
            "the photo and its heatmap side by side",
            _side,
            size=lambda width, height, max_side: (2 * width, height),
        ),
        OutputKind(
            "pointcloud",
            ("ply",),
            "a coloured point cloud, one point per grid pixel (docs/3d.md)",
            _pointcloud,
            size=grid_shape,
            geometry=True,
        ),
        OutputKind(
            "mesh",
            ("glb",),
            "a grid mesh textured with the photo, torn at depth edges (docs/3d.md)",
            _mesh,
            size=grid_shape,
            geometry=True,
        ),
    )
}


@dataclass(frozen=True)
class Save:
    """One ``--save`` name of the batch CLI: an output kind in a file format."""

    kind: str
    format: str
    ending: str  # appended to the input's stem


SAVES: dict[str, Save] = {
    "heatmap": Save("heatmap", "png", "-depth.png"),
    # "-depth16.png", not ".png": every picture the CLI writes has an ending of its own, so a
    # folder scan can tell its outputs from photos (cli.find_images skips them).
    "png16": Save("depth", "png16", "-depth16.png"),
    "npy": Save("depth", "npy", ".npy"),
    "pfm": Save("depth", "pfm", ".pfm"),
    "side": Save("side", "png", "-side.png"),
    "ply": Save("pointcloud", "ply", ".ply"),
    "glb": Save("mesh", "glb", ".glb"),
}
