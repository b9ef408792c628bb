"""The reference input rule and the bicubic upsample, against values written out by hand."""

import numpy as np
import pytest

from midas_service.inference.pipeline import upsample
from midas_service.inference.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NETWORK_SHAPES,
    network_size,
    to_network_input,
)


@pytest.mark.parametrize(
    ("width", "height", "expected_width", "expected_height"),
    [
        (640, 480, 256, 192),
        (512, 512, 256, 256),
        (600, 400, 256, 160),
        (640, 427, 256, 160),
        (480, 640, 192, 256),
        (100, 3000, 32, 256),
        (3000, 100, 256, 32),
        (1, 1, 256, 256),
        # 118.3 px rounds to 4 x 32 = 128, not floored to 96 (a phone screenshot)
        (2532, 1170, 256, 128),
        (1170, 2532, 128, 256),
    ],
)
def test_upper_bound_rule(width, height, expected_width, expected_height):
    assert network_size(height, width) == (expected_height, expected_width)


def test_every_side_is_a_multiple_of_32_within_bounds():
    for height in range(1, 700, 7):
        for width in range(1, 700, 11):
            h, w = network_size(height, width)
            assert 32 <= h <= 256 and 32 <= w <= 256 and h % 32 == 0 and w % 32 == 0


def test_network_shapes_are_every_size_the_rule_gives():
    given = {network_size(h, w) for h in range(1, 700, 3) for w in range(1, 700, 7)}
    assert given == set(NETWORK_SHAPES)
    assert len(NETWORK_SHAPES) == 15


def test_imagenet_constants_are_the_published_ones():
    np.testing.assert_array_equal(IMAGENET_MEAN, np.float32([0.485, 0.456, 0.406]))
    np.testing.assert_array_equal(IMAGENET_STD, np.float32([0.229, 0.224, 0.225]))


@pytest.mark.parametrize(
    ("rgb", "expected"),
    [
        # (0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.5 - 0.406) / 0.225, worked by hand
        ((0.5, 0.5, 0.5), (0.0655022, 0.1964286, 0.4177778)),
        # (0.2 - 0.485) / 0.229, (0.6 - 0.456) / 0.224, (0.9 - 0.406) / 0.225: channel order too
        ((0.2, 0.6, 0.9), (-1.2445415, 0.6428571, 2.1955556)),
        ((0.0, 0.0, 0.0), (-2.1179039, -2.0357143, -1.8044444)),
    ],
)
def test_network_input_is_normalised_nchw_float32(rgb, expected):
    image = np.empty((480, 640, 3), dtype=np.float32)
    image[...] = rgb
    batch = to_network_input(image)
    assert batch.shape == (1, 3, 192, 256) and batch.dtype == np.float32
    assert batch.flags.c_contiguous
    np.testing.assert_allclose(batch[0, :, 10, 10], expected, atol=1e-5)
    np.testing.assert_allclose(batch[0, :, -1, -1], expected, atol=1e-5)


@pytest.mark.parametrize(("height", "width"), [(45, 61), (480, 640), (7, 300)])
def test_upsample_is_torch_bicubic_without_aligned_corners(height, width):
    import torch

    prediction = np.random.default_rng(height).random((12, 16), dtype=np.float32) * 10
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(prediction)[None, None],
        size=(height, width),
        mode="bicubic",
        align_corners=False,
    )[0, 0].numpy()
    got = upsample(prediction, height, width)
    assert got.shape == (height, width)
    assert np.abs(got - expected).max() <= 1e-4 * float(expected.max() - expected.min())


def test_an_8bit_photo_gives_the_float_photos_input_and_picture_exactly(photo_dir):
    """/predict keeps 8-bit photos as uint8 (a quarter of the memory); the network input and
    the side-by-side picture must be bit for bit those of the float32 photo."""
    import cv2

    from midas_service.images.decode import decode_pixels, read_header, to_float_rgb
    from midas_service.images.visualize import side_by_side

    data = (photo_dir / "chelsea.png").read_bytes()
    header = read_header(data, len(data), 10**8)
    rgb8 = decode_pixels(data, header, keep_8bit=True)
    rgb = decode_pixels(data, header)
    assert rgb8.dtype == np.uint8 and rgb.dtype == np.float32 and rgb8.shape == rgb.shape
    np.testing.assert_array_equal(rgb, to_float_rgb(cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR)))
    np.testing.assert_array_equal(to_network_input(rgb8), to_network_input(rgb))
    heat = np.zeros_like(rgb8)
    np.testing.assert_array_equal(side_by_side(rgb8, heat), side_by_side(rgb, heat))


@pytest.mark.parametrize("kind", ["colour", "grayscale", "progressive"])
def test_jpeg_decode_gives_opencvs_pixels(kind):
    """The libjpeg-turbo fast path (simplejpeg) decodes exactly what OpenCV decodes."""
    import cv2

    from devtools.support import photo_640x480_jpeg
    from midas_service.images import decode

    bgr = cv2.imdecode(np.frombuffer(photo_640x480_jpeg(), np.uint8), cv2.IMREAD_COLOR)
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if kind == "progressive" else []
    picture = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if kind == "grayscale" else bgr
    data = cv2.imencode(".jpg", picture, params)[1].tobytes()
    assert decode._decode_jpeg_rgb(data) is not None  # the fast path is taken
    header = decode.read_header(data, 1 << 30, 1 << 30)
    opencv = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), 4)
    np.testing.assert_array_equal(decode.decode_pixels(data, header, keep_8bit=True), opencv)
    np.testing.assert_array_equal(
        decode.decode_pixels(data, header), decode.to_float_rgb(cv2.cvtColor(opencv, 4))
    )


def test_network_input_equals_normalising_then_transposing():
    rgb = np.random.default_rng(3).random((300, 500, 3), dtype=np.float32)
    resized = cv2_resize_like_reference(rgb, to_network_input(rgb).shape[2:])
    expected = ((resized - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[np.newaxis]
    np.testing.assert_array_equal(to_network_input(rgb), expected)


def cv2_resize_like_reference(rgb, size):
    import cv2

    height, width = size
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_CUBIC)
