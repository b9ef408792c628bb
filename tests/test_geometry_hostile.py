"""3D parameters at and past their limits: refused with a 400 on /predict, /jobs and the CLI,
and whatever gets through writes only finite numbers (strict JSON in the GLB, finite PLY).

The files are read back with plyfile and pygltflib, and the GLB's JSON chunk with Python's
``json`` refusing ``NaN``/``Infinity`` (which glTF, being JSON, does not allow).
"""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pygltflib
import pytest
from plyfile import PlyData

from midas_service.geometry.surface import build_surface
from midas_service.geometry.view import FAR_MAX, FOV_MAX_DEG, FOV_MIN_DEG, NEAR_MIN
from midas_service.images import encode3d

FLOAT32_MAX = float(np.finfo(np.float32).max)


def strict_json(text: bytes) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def glb_json(data: bytes) -> dict:
    """The GLB's JSON chunk, parsed as strict JSON."""
    length, kind = struct.unpack_from("<II", data, 12)
    assert kind == 0x4E4F534A
    return strict_json(data[20 : 20 + length])


def glb_positions(data: bytes) -> np.ndarray:
    gltf = pygltflib.GLTF2.load_from_bytes(data)
    blob = gltf.binary_blob()
    acc = gltf.accessors[gltf.meshes[0].primitives[0].attributes.POSITION]
    view = gltf.bufferViews[acc.bufferView]
    start = view.byteOffset + (acc.byteOffset or 0)
    return np.frombuffer(blob, "<f4", count=acc.count * 3, offset=start).reshape(-1, 3)


def ply_points(data: bytes) -> np.ndarray:
    vertices = PlyData.read(io.BytesIO(data))["vertex"].data
    return np.stack([vertices[axis] for axis in "xyz"], axis=1)


def predict(client, photo: bytes, query: str):
    return client.post(f"/predict?{query}", data=photo, content_type="image/jpeg")


PAST_THE_LIMITS = {  # id: (query, the parameter the message must name)
    "near-tiny-far-huge": ("output=mesh&near=1e-300&far=1e300", "near"),
    "far-past-float32": ("output=mesh&far=3.5e38", "far"),
    "far-past-the-bound": (f"output=pointcloud&far={FAR_MAX * 10!r}", "far"),
    "near-below-the-bound": (f"output=pointcloud&near={NEAR_MIN / 10!r}", "near"),
    "near-huge": ("output=mesh&near=1e300&far=1e301", "near"),
    "fov-subnormal": ("output=mesh&fov=1e-320", "fov"),
    "fov-below-one-degree": ("output=mesh&fov=0.5", "fov"),
    "fov-above-179": ("output=pointcloud&fov=179.5", "fov"),
    "fov-overflow": ("output=mesh&fov=1e400", "fov"),
    "near-negative-zero": ("output=mesh&near=-0", "near"),
    "max-side-huge": ("output=mesh&grid_side=99999999999999999999", "grid_side"),
}


@pytest.mark.parametrize(("query", "parameter"), PAST_THE_LIMITS.values(), ids=PAST_THE_LIMITS)
def test_3d_parameters_past_their_limits_are_a_400_and_the_service_goes_on(
    client, jpeg_640x480, query, parameter
):
    response = predict(client, jpeg_640x480, query)
    assert response.status_code == 400 and response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["code"] == "bad_parameter" and parameter in error["message"], error
    after = predict(client, jpeg_640x480, "output=mesh&grid_side=16")
    assert after.status_code == 200 and glb_json(after.data)["asset"]["version"] == "2.0"


@pytest.mark.parametrize(
    "query",
    [
        f"fov={FOV_MIN_DEG:g}&near={NEAR_MIN!r}&far={FAR_MAX!r}",
        f"fov={FOV_MAX_DEG:g}&near={NEAR_MIN!r}&far={FAR_MAX!r}",
        f"fov={FOV_MAX_DEG:g}&near={FAR_MAX * 0.999!r}&far={FAR_MAX!r}",
    ],
    ids=["narrowest-deepest", "widest-deepest", "both-planes-at-the-far-bound"],
)
def test_the_extremes_that_are_accepted_give_finite_files(client, jpeg_640x480, query):
    """At the bounds, the GLB is strict JSON with a real camera and every vertex finite
    (the widest angle reaches ``tan(89.5 deg) * FAR_MAX`` from the axis), and the PLY too."""
    mesh = predict(client, jpeg_640x480, f"output=mesh&grid_side=32&{query}")
    assert mesh.status_code == 200, mesh.get_data(as_text=True)
    document = glb_json(mesh.data)
    camera = document["cameras"][0]["perspective"]
    assert 0 < camera["yfov"] < np.pi and 0 < camera["znear"] < camera["zfar"] < FLOAT32_MAX
    positions = glb_positions(mesh.data)
    assert np.isfinite(positions).all() and (positions[:, 2] < 0).all()
    position = document["accessors"][0]
    assert np.allclose(position["max"], positions.max(axis=0))
    assert np.allclose(position["min"], positions.min(axis=0))
    cloud = predict(client, jpeg_640x480, f"output=pointcloud&grid_side=32&{query}")
    assert cloud.status_code == 200
    points = ply_points(cloud.data)
    assert np.isfinite(points).all() and (points[:, 2] < 0).all()
    assert np.array_equal(points, positions)


def test_exif_focal_lengths_past_the_fov_range_are_held_to_it():
    """FocalLengthIn35mmFilm is any 16-bit number: 65,535 mm would mean 0.03 degrees."""
    from PIL import Image

    from midas_service.answer import with_camera
    from midas_service.images.outputs import RenderOptions

    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x8769] = {0xA405: 65535}
    Image.new("RGB", (90, 60)).save(buffer, "PNG", exif=exif.tobytes())
    options = with_camera(buffer.getvalue(), RenderOptions("mesh", "glb", "inferno"), 90, 60)
    assert options.fov == FOV_MIN_DEG


@pytest.mark.parametrize(
    ("fov", "near", "far"),
    [(60.0, 1e-300, 1e300), (60.0, 1.0, 3.5e38), (1e-320, 1.0, 10.0)],
    ids=["overflowing-depth", "far-past-float32", "subnormal-fov"],
)
def test_the_encoders_never_write_a_non_finite_number(fov, near, far):
    """The last line of defence, below the parameter checks: a surface built past the limits
    (the geometry functions themselves take any positive numbers) is refused by both writers."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    inverse = rng.random((12, 16), dtype=np.float32) + 0.1
    surface = build_surface(rgb, inverse, fov, near, far, max_side=16)
    with pytest.raises(encode3d.NonFiniteGeometry):
        encode3d.to_ply(surface)
    with pytest.raises(encode3d.NonFiniteGeometry):
        encode3d.to_glb(surface, encode3d.texture_jpeg(rgb))


def test_the_cli_refuses_the_same_extremes_in_one_line(model_path, photo_dir, tmp_path):
    from tests.test_cli import run_cli

    for flags in (("--near", "1e-300", "--far", "1e300"), ("--fov", "1e-320"), ("--fov", "200")):
        result = run_cli(
            "predict",
            photo_dir / "chelsea.png",
            "--model",
            model_path,
            "--output-dir",
            tmp_path,
            "--save",
            "glb",
            *flags,
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().count("\n") == 0 and flags[0] in result.stderr
        assert "Traceback" not in result.stderr and not list(tmp_path.iterdir())


def test_jobs_take_no_3d_parameter_so_their_meshes_use_the_defaults(model_path, tmp_path):
    """A job's 3D outputs are rendered with the default camera and planes (inside every
    range); any 3D parameter on /jobs, extreme or not, is refused before the upload is kept."""
    from devtools.jobs_support import small_photos
    from devtools.servers import redis_server
    from midas_service.config import JobSettings
    from tests.test_jobs import make_app

    with redis_server(tmp_path) as url:
        jobs = JobSettings(redis_url=url, directory=tmp_path / "store", queue="midas-3d")
        client = make_app(model_path, jobs).test_client()
        photo = small_photos(1)[0]
        for query in ("output=mesh&near=1e-300&far=1e300", "output=mesh&fov=1e-320", "fov=60"):
            response = client.post(
                f"/jobs?{query}",
                data={"file": (io.BytesIO(photo), "a.jpg")},
                content_type="multipart/form-data",
            )
            assert response.status_code == 400, query
            error = response.get_json()["error"]
            assert error["code"] == "bad_parameter" and "unknown parameter" in error["message"]
        assert not any(jobs.directory.glob("*/job.json"))
