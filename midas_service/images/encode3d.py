"""Writers of the 3D outputs: binary PLY point clouds and GLB (glTF 2.0 binary) meshes.

Both are written with numpy alone rather than through trimesh: the byte layout is then
exactly the documented one (trimesh's loaders merge duplicate vertices and re-encode the
texture on export, which would break "one vertex per grid point, coloured by its pixel"),
and the answer path needs no extra import. The tests read every file back with independent
readers (plyfile, pygltflib, the Khronos glTF validator).
"""

from __future__ import annotations

import json
import struct

import cv2
import numpy as np

from midas_service.geometry.surface import Surface, to_uint8

PLY_VERTEX = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
)
# WebGL 1 guarantees only 2048; phones and three.js handle it, and it keeps the GLB small.
TEXTURE_MAX_SIDE = 2048
TEXTURE_JPEG_QUALITY = 90

GLB_MAGIC = 0x46546C67  # "glTF"
GLB_JSON = 0x4E4F534A
GLB_BIN = 0x004E4942
FLOAT, UNSIGNED_INT = 5126, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
LINEAR, LINEAR_MIPMAP_LINEAR, CLAMP_TO_EDGE = 9729, 9987, 33071
TRIANGLES, POINTS = 4, 0


class NonFiniteGeometry(ValueError):
    """A surface with an infinite or NaN number: never written (the 3D parameters' ranges
    should make it impossible; reaching this is a fault of the service, not of the photo)."""


def check_finite(surface: Surface) -> None:
    """Raise :class:`NonFiniteGeometry` unless every number a file would hold is finite and
    the camera is a real one (glTF requires yfov > 0 and zfar > znear > 0)."""
    camera = surface.camera
    scalars = (camera.focal, camera.vertical_fov_deg, surface.near, surface.far)
    if not (
        np.isfinite(surface.points).all()
        and np.isfinite(surface.uv).all()
        and all(np.isfinite(scalars))
        and camera.vertical_fov_deg > 0
        and 0 < surface.near < surface.far
    ):
        raise NonFiniteGeometry(
            f"the 3D surface has numbers out of range (fov {camera.horizontal_fov_deg:g}, "
            f"near {surface.near:g}, far {surface.far:g}): not written"
        )


def to_ply(surface: Surface) -> bytes:
    """Binary little-endian PLY: one vertex per grid point, xyz float32 and rgb uchar."""
    check_finite(surface)
    count = len(surface.points)
    header = (
        "ply\n"
        "format binary_little_endian 1.0\n"
        "comment midas-service: relative depth, pinhole camera at the origin looking down -Z, "
        "+Y up\n"
        f"comment grid {surface.grid.width}x{surface.grid.height} "
        f"fov {surface.camera.horizontal_fov_deg:.6g} near {surface.near:g} far {surface.far:g}\n"
        f"element vertex {count}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        "end_header\n"
    ).encode("ascii")
    vertices = np.empty(count, dtype=PLY_VERTEX)
    vertices["x"], vertices["y"], vertices["z"] = surface.points.T
    vertices["red"], vertices["green"], vertices["blue"] = surface.colours.T
    return header + vertices.tobytes()


def texture_jpeg(rgb: np.ndarray) -> bytes:
    """The photo as the mesh's texture: JPEG, at most TEXTURE_MAX_SIDE on its longer side."""
    height, width = rgb.shape[:2]
    scale = min(1.0, TEXTURE_MAX_SIDE / max(width, height))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    bgr = cv2.cvtColor(to_uint8(rgb), cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, TEXTURE_JPEG_QUALITY])
    if not ok:
        raise ValueError("OpenCV could not encode the texture")
    return buffer.tobytes()


class _Binary:
    """The GLB's one buffer, assembled view by view (each 4-byte aligned)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.length = 0
        self.views: list[dict[str, object]] = []

    def add(self, data: bytes, target: int | None = None) -> int:
        view: dict[str, object] = {"buffer": 0, "byteOffset": self.length, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.views.append(view)
        padding = -len(data) % 4
        self.parts.append(data + b"\0" * padding)
        self.length += len(data) + padding
        return len(self.views) - 1

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def _gltf_document(surface: Surface, binary: _Binary, image_view: int) -> dict[str, object]:
    points = surface.points
    accessors: list[dict[str, object]] = [
        {
            "bufferView": binary.add(points.astype("<f4").tobytes(), ARRAY_BUFFER),
            "componentType": FLOAT,
            "count": len(points),
            "type": "VEC3",
            "min": points.min(axis=0).tolist(),
            "max": points.max(axis=0).tolist(),
        },
        {
            "bufferView": binary.add(surface.uv.astype("<f4").tobytes(), ARRAY_BUFFER),
            "componentType": FLOAT,
            "count": len(surface.uv),
            "type": "VEC2",
        },
    ]
    primitive: dict[str, object] = {
        "attributes": {"POSITION": 0, "TEXCOORD_0": 1},
        "material": 0,
        "mode": TRIANGLES,
    }
    if len(surface.triangles):
        indices = surface.triangles.astype("<u4").ravel()
        accessors.append(
            {
                "bufferView": binary.add(indices.tobytes(), ELEMENT_ARRAY_BUFFER),
                "componentType": UNSIGNED_INT,
                "count": len(indices),
                "type": "SCALAR",
            }
        )
        primitive["indices"] = 2
    else:  # every triangle bridged an edge (or a one-pixel-wide photo): show the points
        primitive["mode"] = POINTS
    camera = surface.camera
    return {
        "asset": {"version": "2.0", "generator": "midas-service"},
        "extensionsUsed": ["KHR_materials_unlit"],
        "scene": 0,
        "scenes": [{"nodes": [0, 1]}],
        "nodes": [{"name": "photo", "mesh": 0}, {"name": "photo camera", "camera": 0}],
        "cameras": [
            {
                "type": "perspective",
                "perspective": {
                    "yfov": float(np.radians(camera.vertical_fov_deg)),
                    "aspectRatio": camera.width / camera.height,
                    "znear": surface.near / 2,
                    "zfar": surface.far * 2,
                },
            }
        ],
        "meshes": [{"name": "photo", "primitives": [primitive]}],
        "materials": [
            {
                "name": "photo",
                "pbrMetallicRoughness": {
                    "baseColorTexture": {"index": 0},
                    "metallicFactor": 0.0,
                    "roughnessFactor": 1.0,
                },
                "doubleSided": True,
                "extensions": {"KHR_materials_unlit": {}},  # the photo's colours, unlit
            }
        ],
        "textures": [{"sampler": 0, "source": 0}],
        "samplers": [
            {
                "magFilter": LINEAR,
                "minFilter": LINEAR_MIPMAP_LINEAR,
                "wrapS": CLAMP_TO_EDGE,
                "wrapT": CLAMP_TO_EDGE,
            }
        ],
        "images": [{"bufferView": image_view, "mimeType": "image/jpeg"}],
        "accessors": accessors,
        "bufferViews": binary.views,
        "buffers": [{"byteLength": binary.length}],
    }


def to_glb(surface: Surface, texture: bytes) -> bytes:
    """GLB of the grid mesh, textured with ``texture`` (JPEG bytes of the photo), with the
    photo's camera as a glTF camera node (at the origin, looking down -Z)."""
    check_finite(surface)
    binary = _Binary()
    image_view = binary.add(texture)
    document = _gltf_document(surface, binary, image_view)
    document["asset"]["extras"] = {  # type: ignore[index]
        "fov_deg": surface.camera.horizontal_fov_deg,
        "near": surface.near,
        "far": surface.far,
        "grid": [surface.grid.width, surface.grid.height],
    }
    text = json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8")
    text += b" " * (-len(text) % 4)
    body = binary.bytes()
    length = 12 + 8 + len(text) + 8 + len(body)
    return b"".join(
        (
            struct.pack("<III", GLB_MAGIC, 2, length),
            struct.pack("<II", len(text), GLB_JSON),
            text,
            struct.pack("<II", len(body), GLB_BIN),
            body,
        )
    )
