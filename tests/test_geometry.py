"""3D from one photo: the geometry rule, and PLY/GLB files read back by independent readers.

plyfile reads the point clouds, pygltflib the meshes, and the Khronos glTF validator (npm,
``MIDAS_GLTF_VALIDATOR``; scripts/test.sh installs it) judges every GLB. The photo's pixels
are decoded here with OpenCV, apart from the service's own decoder.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import struct
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pygltflib
import pytest
from PIL import Image
from plyfile import PlyData

from devtools.support import ROOT
from midas_service.answer import render, with_camera
from midas_service.geometry.camera import fov_from_35mm, pinhole
from midas_service.geometry.depth import depth_from_inverse
from midas_service.geometry.grid import grid_shape, make_grid
from midas_service.geometry.mesh import edge_ratio, grid_triangles
from midas_service.geometry.surface import build_surface
from midas_service.images.output_limits import output_refusal, output_size
from midas_service.images.outputs import RenderOptions

VALIDATOR_VERSION = "2.0.0-dev.3.10"
VALIDATOR = os.environ.get(
    "MIDAS_GLTF_VALIDATOR",
    str(
        Path.home()
        / f".cache/midas-service/gltf-validator-{VALIDATOR_VERSION}/node_modules/gltf-validator"
    ),
)


def photo(width: int = 96, height: int = 64, seed: int = 0) -> np.ndarray:
    """A uint8 RGB picture with every pixel different enough to tell neighbours apart."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def as_float(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) / 255.0


def step_depth(width: int, height: int) -> np.ndarray:
    """Relative inverse depth: the left half near (large), the right half far (small), each
    with a gentle slope, so the only discontinuity is the step at the middle column."""
    inverse = np.empty((height, width), dtype=np.float32)
    columns = np.arange(width)
    inverse[:] = np.where(columns < width // 2, 10.0 - 0.001 * columns, 1.0 + 0.001 * columns)
    return inverse


def read_ply(data: bytes) -> np.ndarray:
    ply = PlyData.read(io.BytesIO(data))
    assert ply.elements[0].name == "vertex" and not ply.text
    assert ply.byte_order == "<"
    return ply["vertex"].data


def read_glb(data: bytes) -> tuple[pygltflib.GLTF2, bytes]:
    gltf = pygltflib.GLTF2.load_from_bytes(data)
    return gltf, gltf.binary_blob()


def accessor(gltf: pygltflib.GLTF2, blob: bytes, index: int) -> np.ndarray:
    acc = gltf.accessors[index]
    view = gltf.bufferViews[acc.bufferView]
    dtype = {pygltflib.FLOAT: "<f4", pygltflib.UNSIGNED_INT: "<u4"}[acc.componentType]
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3}[acc.type]
    start = view.byteOffset + (acc.byteOffset or 0)
    values = np.frombuffer(blob, dtype=dtype, count=acc.count * width, offset=start)
    return values.reshape(acc.count, width) if width > 1 else values


def texture_of(gltf: pygltflib.GLTF2, blob: bytes) -> np.ndarray:
    image = gltf.images[gltf.textures[0].source]
    view = gltf.bufferViews[image.bufferView]
    encoded = blob[view.byteOffset : view.byteOffset + view.byteLength]
    assert image.mimeType == "image/jpeg"
    return cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


# The camera and the depth rule.


def test_fov_from_the_35mm_equivalent_focal_length():
    # A 3:2 landscape photo: the familiar 2 atan(36 / 2f), along its 36 mm side.
    assert fov_from_35mm(24, 3000, 2000) == pytest.approx(math.degrees(2 * math.atan(36 / 48)))
    # Turned to portrait, the horizontal side is the 24 mm one.
    assert fov_from_35mm(24, 2000, 3000) == pytest.approx(math.degrees(2 * math.atan(24 / 48)))
    # A 4:3 phone photo: its diagonal angle is the 35 mm frame's.
    fov = fov_from_35mm(26, 4000, 3000)
    diagonal = 2 * math.atan(math.tan(math.radians(fov) / 2) * 5 / 4)
    assert diagonal == pytest.approx(2 * math.atan(math.hypot(36, 24) / 52))


def test_pinhole_sees_the_photo_edge_at_half_the_fov():
    camera = pinhole(640, 480, 60.0)
    assert camera.cx == 320 and camera.cy == 240
    assert math.degrees(math.atan(320 / camera.focal)) == pytest.approx(30.0)
    assert camera.horizontal_fov_deg == pytest.approx(60.0)
    with pytest.raises(ValueError):
        pinhole(640, 480, 180.0)


def test_depth_rule_maps_the_range_to_near_far_and_keeps_planes_planar():
    # An inverse-depth ramp across the picture, as a tilted plane gives, of any scale/shift.
    inverse = 3.0 + 0.25 * np.arange(100, dtype=np.float64)
    depth = depth_from_inverse(inverse, near=2.0, far=8.0)
    assert depth[-1] == pytest.approx(2.0)  # largest inverse depth: the nearest point
    assert depth[0] == pytest.approx(8.0)
    assert np.all(np.diff(depth) < 0)
    # Linear in inverse depth: 1/d stays an affine function of the pixel, so a plane.
    assert np.allclose(np.diff(1 / depth, 2), 0.0, atol=1e-12)
    # Scale and shift of MiDaS's output do not matter.
    assert np.allclose(depth_from_inverse(7 * inverse - 5, 2.0, 8.0), depth)
    flat = depth_from_inverse(np.full(5, 0.3), near=1.0, far=3.0)
    assert np.allclose(flat, 1 / ((1 + 1 / 3) / 2))


def test_grid_keeps_the_aspect_and_never_exceeds_max_side():
    assert grid_shape(640, 480, 512) == (512, 384)
    assert grid_shape(480, 640, 512) == (384, 512)
    assert grid_shape(300, 200, 512) == (300, 200)  # small photos: one vertex per pixel
    assert grid_shape(5000, 1, 512) == (512, 1)
    grid = make_grid(640, 480, 512)
    assert grid.xs[0] == 0 and grid.xs[-1] == 639 and grid.ys[-1] == 479
    assert np.all(np.diff(grid.xs) > 0) and np.all(np.diff(grid.ys) > 0)
    assert output_size(640, 480, "mesh", 100) == (100, 75)
    assert output_refusal(40_000, 1_000, "pointcloud", "ply", 1024) is None


def test_back_projection_follows_gltf_axes():
    """Row 0 is up (+Y), column 0 left (-X), and everything is in front (z = -depth)."""
    height, width = 48, 64
    surface = build_surface(
        as_float(photo(width, height)),
        np.ones((height, width), np.float32),
        fov=90.0,
        near=1.0,
        far=4.0,
    )
    points = surface.points.reshape(height, width, 3)
    depth = 1 / ((1 + 1 / 4) / 2)  # a flat map: the middle of the inverse-depth range
    assert np.allclose(points[..., 2], -depth)
    assert np.all(points[0, :, 1] > 0) and np.all(points[-1, :, 1] < 0)
    assert np.all(points[:, 0, 0] < 0) and np.all(points[:, -1, 0] > 0)
    # 90 degrees: the pixel centre at the right edge sits at x/d = (W - 0.5 - W/2) / (W/2).
    assert points[0, -1, 0] / depth == pytest.approx((width - 0.5 - width / 2) / (width / 2))
    # Counter-clockwise seen from the camera: the normals of a fronto-parallel sheet face +Z.
    corners = surface.points[surface.triangles]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    assert len(surface.triangles) == 2 * (height - 1) * (width - 1)
    assert np.all(normals[:, 2] > 0)


def test_a_near_far_step_gives_the_z_order_and_no_triangle_bridges_it():
    height, width = 40, 60
    surface = build_surface(as_float(photo(width, height)), step_depth(width, height))
    points = surface.points.reshape(height, width, 3)
    left, right = points[:, : width // 2, 2], points[:, width // 2 :, 2]
    assert left.min() > right.max()  # the near half is nearer the camera (less negative z)
    assert np.all(points[..., 2] < 0)
    column = np.tile(np.arange(width), height)[surface.triangles]
    sides = column < width // 2
    assert np.all(sides.all(axis=1) | ~sides.any(axis=1)), "a triangle spans the step"
    # Exactly the cells across the step are gone: one column of cells, two triangles each.
    assert len(surface.triangles) == 2 * (height - 1) * (width - 1) - 2 * (height - 1)


def test_edge_ratio_spares_a_full_range_slope_at_any_grid():
    for cells in (4, 63, 511, 1023):
        inverse = np.linspace(1.0, 0.0, cells + 1)  # nearest to farthest across the grid
        depth = depth_from_inverse(inverse, 1.0, 10.0)
        across_a_triangle = (depth[2:] / depth[:-2]).max()  # up to two grid steps
        assert across_a_triangle < edge_ratio(1.0, 10.0, cells)
    assert edge_ratio(1.0, 10.0, 511) < 1.1  # and a 10 % step is an edge at the default grid


# The files, read back.


def test_ply_has_one_vertex_per_grid_point_with_the_photo_colours():
    rgb = photo(200, 120)
    inverse = step_depth(200, 120)
    options = RenderOptions("pointcloud", "ply", "inferno", fov=70.0, grid_side=50)
    vertices = read_ply(render(as_float(rgb), inverse, options).body)
    grid = make_grid(200, 120, 50)
    assert (grid.width, grid.height) == (50, 30)
    assert len(vertices) == grid.size
    assert vertices["x"].dtype == np.dtype("<f4") and vertices["red"].dtype == np.uint8
    colours = np.stack([vertices["red"], vertices["green"], vertices["blue"]], axis=1)
    expected = rgb[np.ix_(grid.ys, grid.xs)].reshape(-1, 3)
    assert np.array_equal(colours, expected)
    # Each point lies on its pixel's ray: x/-z and y/-z are the pinhole's, row 0 on top.
    focal = 100 / math.tan(math.radians(35))
    xs, ys = np.meshgrid(grid.xs, grid.ys)
    z = -vertices["z"]
    assert np.allclose(vertices["x"] / z, (xs.ravel() + 0.5 - 100) / focal, atol=1e-6)
    assert np.allclose(vertices["y"] / z, -(ys.ravel() + 0.5 - 60) / focal, atol=1e-6)
    # The depth rule over the whole map (the farthest pixel need not be on the grid).
    t = (inverse - inverse.min()) / (inverse.max() - inverse.min())
    expected_depth = 1 / (0.1 + t * 0.9)
    assert np.allclose(z, expected_depth[ys, xs].ravel(), rtol=1e-6)


def test_glb_mesh_reads_back_textured_with_the_photo_and_torn_at_the_step():
    rgb = photo(160, 96, seed=3)
    rgb = cv2.GaussianBlur(rgb, (0, 0), 3)  # smooth enough for the JPEG texture to keep it
    inverse = step_depth(160, 96)
    options = RenderOptions("mesh", "glb", "inferno", grid_side=80)
    gltf, blob = read_glb(render(as_float(rgb), inverse, options).body)
    grid = make_grid(160, 96, 80)
    primitive = gltf.meshes[0].primitives[0]
    assert primitive.mode == pygltflib.TRIANGLES
    positions = accessor(gltf, blob, primitive.attributes.POSITION)
    uv = accessor(gltf, blob, primitive.attributes.TEXCOORD_0)
    triangles = accessor(gltf, blob, primitive.indices).reshape(-1, 3)
    assert len(positions) == len(uv) == grid.size
    # Each vertex's texture coordinate is its own pixel's centre in the photo ...
    xs, ys = np.meshgrid(grid.xs, grid.ys)
    assert np.allclose(uv[:, 0] * 160 - 0.5, xs.ravel(), atol=1e-3)
    assert np.allclose(uv[:, 1] * 96 - 0.5, ys.ravel(), atol=1e-3)
    # ... and the texture is the photo, so the colour there is the photo's pixel.
    texture = texture_of(gltf, blob)
    assert texture.shape == rgb.shape
    at_vertices = texture[ys.ravel(), xs.ravel()].astype(int)
    assert np.abs(at_vertices - rgb[ys.ravel(), xs.ravel()]).mean() < 2.0
    # The step is torn: no triangle has corners on both sides of it.
    column = xs.ravel()[triangles]
    sides = column < 80
    assert np.all(sides.all(axis=1) | ~sides.any(axis=1))
    assert len(triangles) == len(grid_triangles(grid.height, grid.width)) - 2 * (grid.height - 1)
    # Right way up and in front of the camera, which the file also carries.
    assert positions[: grid.width, 1].min() > positions[-grid.width :, 1].max()
    assert np.all(positions[:, 2] < 0)
    camera = gltf.cameras[gltf.nodes[1].camera].perspective
    assert camera.aspectRatio == pytest.approx(160 / 96)
    half_width = math.tan(camera.yfov / 2) * camera.aspectRatio
    assert math.degrees(2 * math.atan(half_width)) == pytest.approx(60.0)
    material = gltf.materials[primitive.material]
    assert "KHR_materials_unlit" in material.extensions and material.doubleSided
    assert gltf.accessors[primitive.attributes.POSITION].max == positions.max(axis=0).tolist()


def validate(data: bytes, tmp_path: Path) -> dict:
    if not Path(VALIDATOR).is_dir() or shutil.which("node") is None:
        pytest.skip(
            f"gltf-validator not found at {VALIDATOR}: scripts/test.sh installs it, or "
            f"npm install --prefix DIR gltf-validator@{VALIDATOR_VERSION} and set "
            "MIDAS_GLTF_VALIDATOR=DIR/node_modules/gltf-validator"
        )
    path = tmp_path / "mesh.glb"
    path.write_bytes(data)
    result = subprocess.run(
        ["node", str(ROOT / "tests" / "validate_gltf.cjs"), str(path)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MIDAS_GLTF_VALIDATOR": VALIDATOR},
        timeout=60,
    )
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    ("width", "height", "depth"),
    [(120, 80, "step"), (1, 30, "step"), (64, 48, "checkerboard")],
    ids=["step", "one-column", "all-torn"],
)
def test_the_gltf_validator_finds_no_error(tmp_path, width, height, depth):
    if depth == "step":
        inverse = step_depth(width, height)
    else:  # every neighbour a near/far jump: no triangle survives, the mesh shows points
        inverse = ((np.indices((height, width)).sum(axis=0) % 2) * 9 + 1).astype(np.float32)
    options = RenderOptions("mesh", "glb", "inferno")
    report = validate(render(as_float(photo(width, height)), inverse, options).body, tmp_path)
    issues = report["issues"]
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"]
    assert report["info"]["totalVertexCount"] == width * height


def test_exif_focal_length_sets_the_camera():
    rgb = photo(90, 60)
    exif = Image.Exif()
    exif[0x8769] = {0xA405: 50}  # Exif IFD: FocalLengthIn35mmFilm = 50 mm
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG", exif=exif.tobytes())
    data = buffer.getvalue()
    options = with_camera(data, RenderOptions("pointcloud", "ply", "inferno"), 90, 60)
    assert options.fov == pytest.approx(fov_from_35mm(50, 90, 60))
    assert options.fov == pytest.approx(math.degrees(2 * math.atan(36 / 100)))
    given = with_camera(data, RenderOptions("mesh", "glb", "inferno", fov=80.0), 90, 60)
    assert given.fov == 80.0  # a fov given wins over EXIF
    plain = RenderOptions("heatmap", "png", "inferno")
    assert with_camera(data, plain, 90, 60) is plain
    no_exif = io.BytesIO()
    Image.fromarray(rgb).save(no_exif, "PNG")
    assert with_camera(no_exif.getvalue(), options.__class__("mesh", "glb", "x"), 90, 60).fov == 60


def test_glb_header_lengths_are_consistent():
    data = render(
        as_float(photo(33, 17)), step_depth(33, 17), RenderOptions("mesh", "glb", "inferno")
    ).body
    magic, version, length = struct.unpack_from("<III", data)
    assert (magic, version, length) == (0x46546C67, 2, len(data))
    json_length, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A and json_length % 4 == 0


# Through /predict (the in-process app, on each backend) and the batch CLI.


def predicted(client, data: bytes, **params: str):
    response = client.post("/predict", query_string=params, data=data, content_type="image/jpeg")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def test_predict_pointcloud_is_the_depth_map_through_the_documented_rule(client, jpeg_640x480):
    response = predicted(
        client, jpeg_640x480, output="pointcloud", format="ply", near="2", far="5", grid_side="64"
    )
    assert response.mimetype == "application/x-ply"
    assert response.headers["Content-Disposition"] == 'attachment; filename="depth.ply"'
    vertices = read_ply(response.data)
    grid = make_grid(640, 480, 64)
    assert len(vertices) == grid.size == 64 * 48
    rgb = cv2.imdecode(np.frombuffer(jpeg_640x480, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    colours = np.stack([vertices["red"], vertices["green"], vertices["blue"]], axis=1)
    assert np.array_equal(colours, rgb[np.ix_(grid.ys, grid.xs)].reshape(-1, 3))
    inverse = np.load(io.BytesIO(predicted(client, jpeg_640x480, output="depth").data))
    t = (inverse - inverse.min()) / (inverse.max() - inverse.min())
    expected = (1 / (1 / 5 + t * (1 / 2 - 1 / 5)))[np.ix_(grid.ys, grid.xs)].ravel()
    span = expected.max() - expected.min()
    assert np.abs(-vertices["z"] - expected).max() <= 1e-4 * span  # runs differ in last bits


def test_predict_mesh_is_a_valid_textured_glb(client, jpeg_640x480, tmp_path):
    response = predicted(client, jpeg_640x480, output="mesh", fov="75")
    assert response.mimetype == "model/gltf-binary"
    assert response.headers["Content-Disposition"] == 'attachment; filename="depth.glb"'
    gltf, blob = read_glb(response.data)
    primitive = gltf.meshes[0].primitives[0]
    assert len(accessor(gltf, blob, primitive.attributes.POSITION)) == 512 * 384
    assert gltf.asset.extras["fov_deg"] == pytest.approx(75.0)
    assert texture_of(gltf, blob).shape == (480, 640, 3)
    issues = validate(response.data, tmp_path)["issues"]
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"]


BAD_VIEWS = {  # id: (query, the parameter the message must name)
    "fov-zero": ("output=pointcloud&fov=0", "fov"),
    "fov-180": ("output=mesh&fov=180", "fov"),
    "fov-negative": ("output=mesh&fov=-10", "fov"),
    "fov-text": ("output=mesh&fov=wide", "fov"),
    "fov-nan": ("output=mesh&fov=nan", "fov"),
    "fov-twice": ("output=mesh&fov=50&fov=60", "fov"),
    "near-zero": ("output=pointcloud&near=0", "near"),
    "near-beyond-far": ("output=pointcloud&near=5&far=2", "far"),
    "near-equals-far": ("output=mesh&near=3&far=3", "far"),
    "far-infinite": ("output=mesh&far=inf", "far"),
    "grid-too-large": ("output=mesh&grid_side=5000", "grid_side"),
    "grid-too-small": ("output=mesh&grid_side=1", "grid_side"),
    "grid-fraction": ("output=pointcloud&grid_side=64.5", "grid_side"),
    "fov-for-a-heatmap": ("output=heatmap&fov=60", "fov"),
    "grid-for-depth": ("output=depth&format=npy&grid_side=64", "grid_side"),
    "format-for-mesh": ("output=mesh&format=ply", "format"),
}


@pytest.mark.parametrize(("query", "parameter"), BAD_VIEWS.values(), ids=BAD_VIEWS.keys())
def test_bad_3d_parameters_are_400_naming_the_parameter(client, jpeg_640x480, query, parameter):
    response = client.post(f"/predict?{query}", data=jpeg_640x480, content_type="image/jpeg")
    assert response.status_code == 400 and response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["code"] == "bad_parameter" and parameter in error["message"], error


def test_openapi_lists_the_3d_outputs_and_parameters(client):
    spec = client.get("/openapi.json").get_json()
    parameters = {p["name"]: p for p in spec["paths"]["/predict"]["post"]["parameters"]}
    assert {"pointcloud", "mesh"} <= set(parameters["output"]["schema"]["enum"])
    assert {"ply", "glb"} <= set(parameters["format"]["schema"]["enum"])
    assert parameters["grid_side"]["schema"]["maximum"] == 1024
    assert (parameters["fov"]["schema"]["minimum"], parameters["fov"]["schema"]["maximum"]) == (
        1,
        179,
    )
    assert parameters["near"]["schema"]["minimum"] == 1e-6
    assert parameters["far"]["schema"]["maximum"] == 1e6
    media = spec["paths"]["/predict"]["post"]["responses"]["200"]["content"]
    assert "model/gltf-binary" in media and "application/x-ply" in media


def test_cli_saves_ply_and_glb(model_path, photo_dir, tmp_path):
    from tests.test_cli import run_cli

    out = tmp_path / "out"
    result = run_cli(
        "predict",
        photo_dir / "chelsea.png",
        "--model",
        model_path,
        "--output-dir",
        out,
        "--save",
        "ply,glb",
        "--grid-side",
        "100",
    )
    assert result.returncode == 0, result.stderr
    assert {p.name for p in out.iterdir()} == {"chelsea.ply", "chelsea.glb"}
    grid = make_grid(451, 300, 100)
    vertices = read_ply((out / "chelsea.ply").read_bytes())
    rgb = cv2.imread(str(photo_dir / "chelsea.png"))[..., ::-1]
    colours = np.stack([vertices["red"], vertices["green"], vertices["blue"]], axis=1)
    assert np.array_equal(colours, rgb[np.ix_(grid.ys, grid.xs)].reshape(-1, 3))
    gltf, blob = read_glb((out / "chelsea.glb").read_bytes())
    positions = accessor(gltf, blob, gltf.meshes[0].primitives[0].attributes.POSITION)
    assert np.array_equal(positions, np.stack([vertices[a] for a in "xyz"], axis=1))


def exif_jpeg(width: int, height: int, focal_35mm: int, orientation: int = 1) -> bytes:
    """A ``width`` x ``height`` JPEG (as stored) with FocalLengthIn35mmFilm and Orientation."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x8769] = {0xA405: focal_35mm}
    buffer = io.BytesIO()
    Image.fromarray(photo(width, height)).save(buffer, "JPEG", exif=exif.tobytes(), quality=95)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("stored", "orientation", "upright"),
    [((120, 80), 1, (120, 80)), ((80, 120), 1, (80, 120)), ((120, 80), 6, (80, 120))],
    ids=["landscape", "portrait", "landscape-turned-by-exif"],
)
def test_the_exif_camera_of_a_non_square_photo_through_predict(
    client, stored, orientation, upright
):
    """The angle from EXIF is horizontal across the upright photo's width: the GLB's camera
    and the vertices follow the formula of docs/3d.md, computed here from scratch."""
    data = exif_jpeg(*stored, focal_35mm=28, orientation=orientation)
    width, height = upright
    half_diagonal = math.atan(math.hypot(36, 24) / (2 * 28))
    tan_half = math.tan(half_diagonal) * width / math.hypot(width, height)
    focal = (width / 2) / tan_half
    gltf, blob = read_glb(predicted(client, data, output="mesh", grid_side="200").data)
    assert gltf.asset.extras["fov_deg"] == pytest.approx(math.degrees(2 * math.atan(tan_half)))
    camera = gltf.cameras[0].perspective
    assert camera.aspectRatio == pytest.approx(width / height)
    assert camera.yfov == pytest.approx(2 * math.atan((height / 2) / focal))
    points = accessor(gltf, blob, gltf.meshes[0].primitives[0].attributes.POSITION)
    assert gltf.asset.extras["grid"] == [width, height] and len(points) == width * height
    corner = points[0]  # pixel (0, 0): X = (0.5 - W/2) / f * d, Y = -(0.5 - H/2) / f * d
    depth = -corner[2]
    assert corner[0] == pytest.approx((0.5 - width / 2) / focal * depth, rel=1e-5)
    assert corner[1] == pytest.approx(-(0.5 - height / 2) / focal * depth, rel=1e-5)
