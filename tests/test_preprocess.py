import numpy as np
import pytest

from midas_service.preprocess import IMAGENET_MEAN, IMAGENET_STD, network_size, to_network_input


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
    ],
)
def test_upper_bound_rule(width, height, expected_width, expected_height):
    assert network_size(height, width) == (expected_height, expected_width)


def test_every_side_is_a_multiple_of_32_within_bounds():
    for height in range(1, 700, 7):
        for width in range(1, 700, 11):
            h, w = network_size(height, width)
            assert 32 <= h <= 256 and 32 <= w <= 256 and h % 32 == 0 and w % 32 == 0


def test_network_input_is_normalised_nchw_float32():
    rgb = np.full((480, 640, 3), 0.5, dtype=np.float32)
    batch = to_network_input(rgb)
    assert batch.shape == (1, 3, 192, 256) and batch.dtype == np.float32
    assert batch.flags.c_contiguous
    np.testing.assert_allclose(batch[0, :, 10, 10], (0.5 - IMAGENET_MEAN) / IMAGENET_STD, rtol=1e-5)
