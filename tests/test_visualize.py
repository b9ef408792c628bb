"""Colormaps and the raw depth encoders."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest

from midas_service.images.encode import encode_depth, encode_picture, from_pfm
from midas_service.images.visualize import COLORMAPS, colorize, heatmap, normalize, side_by_side

RAMP = np.tile(np.linspace(0.0, 5.0, 64, dtype=np.float32), (16, 1))  # far left, near right


@pytest.mark.parametrize("name", sorted(set(COLORMAPS) - {"turbo"}))
def test_each_sequential_colormap_makes_near_brighter_than_far(name):
    picture = heatmap(RAMP, name)
    assert picture.shape == (16, 64, 3) and picture.dtype == np.uint8
    luminance = cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY).astype(int)
    assert luminance[:, -1].mean() > luminance[:, 0].mean() + 100


def test_turbo_makes_near_red_and_far_blue():
    picture = heatmap(RAMP, "turbo").astype(int)
    blue, red = picture[0, 0], picture[0, -1]
    assert blue[0] > blue[2] and red[2] > red[0]  # BGR order


def test_near_is_bright_yellow_and_far_black_in_inferno():
    # Inferno's endpoints (matplotlib's table, as OpenCV ships it), in BGR: 0 -> RGB (0, 0, 4)
    # nearly black, 255 -> RGB (252, 255, 164) pale yellow.
    picture = heatmap(RAMP, "inferno")
    assert (picture[:, 0] == (4, 0, 0)).all()  # far (smallest inverse depth): black
    assert (picture[:, -1] == (164, 255, 252)).all()  # near (largest): yellow
    flipped = heatmap(RAMP[:, ::-1], "inferno")
    assert (flipped[:, 0] == (164, 255, 252)).all() and (flipped[:, -1] == (4, 0, 0)).all()


def test_inferno_is_opencvs_inferno():
    expected = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[None], cv2.COLORMAP_INFERNO)
    got = heatmap(np.arange(256, dtype=np.float32)[None] * 0.01, "inferno")
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("colormap", [name for name in COLORMAPS if name != "gray"])
def test_every_colormap_paints_what_opencvs_colormap_paints(colormap):
    gray = np.random.default_rng(5).integers(0, 256, (37, 53), dtype=np.uint8)
    np.testing.assert_array_equal(
        colorize(gray, colormap), cv2.applyColorMap(gray, COLORMAPS[colormap])
    )


def test_normalize_rounds_like_the_plain_formula():
    depth = np.random.default_rng(3).normal(size=(50, 70)).astype(np.float32) * 7 + 2
    expected = np.rint((depth - depth.min()) / (depth.max() - depth.min()) * 255)
    got = normalize(depth, 255, np.uint8)
    assert got.dtype == np.uint8 and got.min() == 0 and got.max() == 255
    assert np.abs(got.astype(int) - expected).max() <= 1


def test_side_by_side_is_the_photo_in_bgr_then_the_heatmap():
    rgb8 = np.zeros((8, 9, 3), np.uint8)
    rgb8[..., 0] = 200  # red
    rgb8[..., 1] = np.arange(9, dtype=np.uint8) * 10
    rgb8[..., 2] = 30  # a little blue
    heat = heatmap(RAMP[:8, :9])
    combined = side_by_side(rgb8, heat)
    assert combined.shape == (8, 18, 3)
    assert (combined[:, :9, 2] == 200).all() and (combined[:, :9, 0] == 30).all()  # BGR
    np.testing.assert_array_equal(combined[:, :9, 1], rgb8[..., 1])
    np.testing.assert_array_equal(combined[:, 9:], heat)


def test_side_by_side_from_float_equals_from_uint8():
    rgb8 = np.random.default_rng(4).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    heat = np.zeros((8, 9, 3), np.uint8)
    from_float = side_by_side(rgb8.astype(np.float32) / 255.0, heat)
    np.testing.assert_array_equal(from_float, side_by_side(rgb8, heat))


def test_colormaps_differ():
    pictures = {name: heatmap(RAMP, name).tobytes() for name in COLORMAPS}
    assert len(set(pictures.values())) == len(COLORMAPS)


@pytest.mark.parametrize("value", [0.0, 3.5, np.float32(1e30)])
def test_constant_map_does_not_divide_by_zero(value):
    with np.errstate(all="raise"):
        picture = heatmap(np.full((4, 5), value, dtype=np.float32))
        png16 = cv2.imdecode(
            np.frombuffer(encode_depth(np.full((4, 5), value), "png16"), np.uint8), -1
        )
    assert picture.shape == (4, 5, 3) and len(np.unique(picture.reshape(-1, 3), axis=0)) == 1
    assert (png16 == 0).all()


def test_npy_round_trip_is_exact():
    depth = np.random.default_rng(1).random((7, 9), dtype=np.float32)
    np.testing.assert_array_equal(np.load(io.BytesIO(encode_depth(depth, "npy"))), depth)


def test_png16_round_trip_keeps_order_and_range():
    depth = RAMP + 1.0
    decoded = cv2.imdecode(
        np.frombuffer(encode_depth(depth, "png16"), np.uint8), cv2.IMREAD_UNCHANGED
    )
    assert decoded.dtype == np.uint16 and decoded.shape == depth.shape
    assert decoded.min() == 0 and decoded.max() == 65535
    restored = decoded / 65535 * 5.0 + 1.0
    np.testing.assert_allclose(restored, depth, atol=5.0 / 65535)


def test_pfm_round_trip_and_upstream_layout():
    depth = np.random.default_rng(2).random((6, 4), dtype=np.float32)
    data = encode_depth(depth, "pfm")
    assert data.startswith(b"Pf\n4 6\n-1\n")
    body = np.frombuffer(data[len(b"Pf\n4 6\n-1\n") :], "<f4").reshape(6, 4)
    np.testing.assert_array_equal(body[0], depth[-1])  # bottom row first, as upstream writes
    np.testing.assert_array_equal(from_pfm(data), depth)


def test_json_has_values_and_range():
    depth = np.array([[1.0, 2.0], [3.0, 4.5]], dtype=np.float32)
    document = json.loads(encode_depth(depth, "json"))
    assert document["depth"] == [[1.0, 2.0], [3.0, 4.5]]
    assert (document["min"], document["max"], document["width"], document["height"]) == (
        1.0,
        4.5,
        2,
        2,
    )


def test_side_by_side_is_twice_as_wide_and_jpeg_encodes():
    rgb = np.zeros((16, 64, 3), dtype=np.float32)
    combined = side_by_side(rgb, heatmap(RAMP))
    assert combined.shape == (16, 128, 3)
    decoded = cv2.imdecode(
        np.frombuffer(encode_picture(combined, "jpeg"), np.uint8), cv2.IMREAD_COLOR
    )
    assert decoded.shape == (16, 128, 3)
