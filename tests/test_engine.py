"""The pipeline around an engine: any image size and sample type in, a same-size map out."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from midas_service.images.decode import decode_image
from midas_service.inference import engines as engine_module
from midas_service.inference.engines import available_cpus, load_engine
from midas_service.inference.pipeline import DepthEstimator

LIMITS = {"max_bytes": 50 << 20, "max_pixels": 40_000_000}


@pytest.fixture(scope="module")
def estimator(model_path):
    return DepthEstimator(load_engine(model_path, "onnxruntime"))


def png(array: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", array)
    assert ok
    return buffer.tobytes()


@pytest.mark.parametrize(
    ("height", "width"), [(1, 1), (3000, 100), (100, 3000), (480, 640), (7, 5)]
)
def test_output_has_the_input_size(estimator, height, width):
    rgb = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
    depth = estimator.predict(rgb)
    assert depth.shape == (height, width) and depth.dtype == np.float32
    assert np.isfinite(depth).all()


def test_grayscale_rgba_and_16_bit_decode_to_the_same_rgb(photo_dir):
    bgr = cv2.imread(str(photo_dir / "coffee.png"))
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    rgb8 = decode_image(png(bgr), **LIMITS)
    rgba = decode_image(png(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)), **LIMITS)
    rgb16 = decode_image(png(bgr.astype(np.uint16) * 257), **LIMITS)
    from_gray = decode_image(png(gray), **LIMITS)
    assert rgb8.dtype == np.float32 and rgb8.shape == bgr.shape
    np.testing.assert_array_equal(rgba, rgb8)
    np.testing.assert_allclose(rgb16, rgb8, atol=1e-6)
    assert from_gray.shape == bgr.shape and np.array_equal(from_gray[..., 0], from_gray[..., 2])
    assert rgb8.min() >= 0.0 and rgb8.max() <= 1.0


def test_thread_count_follows_the_cgroup_quota(monkeypatch):
    monkeypatch.setattr(engine_module.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(engine_module, "_cgroup_cpu_quota", lambda: 1.5)
    assert available_cpus() == 2
    monkeypatch.setattr(engine_module, "_cgroup_cpu_quota", lambda: None)
    assert available_cpus() == 16


def test_engine_uses_the_requested_threads(model_path):
    assert load_engine(model_path, "onnxruntime", threads=1).threads == 1


def test_unknown_backend_and_missing_file_are_clear(model_path, tmp_path):
    with pytest.raises(ValueError, match="unknown backend"):
        load_engine(model_path, "tensorflow")
    with pytest.raises(FileNotFoundError, match="midas-depth export"):
        load_engine(tmp_path / "none.pt", "torchscript")
