"""The OpenVINO engine's own parts: its compiled-model cache and the settings it compiles with.

Its numbers (reference within 1e-3 of range), metadata and thread counts are tested with the
other backends (test_export.py, test_reference.py, test_core_share.py: parametrized over
BACKENDS).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from midas_service.config import DEFAULT_OPENVINO_CACHE_DIR, Settings
from midas_service.inference.engines import load_engine
from midas_service.inference.engines.openvino import compile_config
from tests.conftest import range_error

BATCH = np.random.default_rng(3).standard_normal((1, 3, 96, 128), dtype=np.float32)


def blobs(folder: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime for p in folder.rglob("*.blob")}


def test_a_second_load_comes_from_the_cache_with_the_same_numbers(model_path, tmp_path):
    cache = tmp_path / "ov-cache"
    first = load_engine(model_path, "openvino", 1, cache_dir=cache)
    written = blobs(cache)
    second = load_engine(model_path, "openvino", 1, cache_dir=cache)
    assert not first.loaded_from_cache and second.loaded_from_cache
    assert len(written) == 1 and blobs(cache) == written  # read back, not rewritten
    assert (cache.stat().st_mode & 0o777) == 0o700  # other users cannot plant a blob
    np.testing.assert_array_equal(second.infer(BATCH), first.infer(BATCH))
    # The thread count is a run-time setting: the same blob serves another count.
    other = load_engine(model_path, "openvino", 2, cache_dir=cache)
    assert other.loaded_from_cache and blobs(cache) == written
    assert other._compiled.get_property("INFERENCE_NUM_THREADS") == 2


def test_a_model_replaced_in_place_is_not_served_from_the_stale_cache(model_path, tmp_path):
    """New weights at the same path, size and modification time (as ``cp -p``, ``rsync -a`` or
    a tar extraction leave them): OpenVINO's cache entry for a path does not see the change,
    so the engine compiles from the model, whose entry hashes the weights."""
    import os

    import onnx
    from onnx import numpy_helper

    served = tmp_path / "models" / "midas_small.pt"
    served.parent.mkdir()
    shutil.copy(model_path.with_suffix(".onnx"), served.with_suffix(".onnx"))
    cache = tmp_path / "ov-cache"
    before = load_engine(served, "openvino", 1, cache_dir=cache).infer(BATCH)
    proto = onnx.load(str(served.with_suffix(".onnx")))
    last_conv = proto.graph.initializer[-2]  # output_conv's last weights: changes every pixel
    changed = numpy_helper.to_array(last_conv) * 3.0
    last_conv.CopyFrom(numpy_helper.from_array(changed, last_conv.name))
    stat = served.with_suffix(".onnx").stat()
    onnx.save(proto, str(served.with_suffix(".onnx")))
    assert served.with_suffix(".onnx").stat().st_size == stat.st_size
    os.utime(served.with_suffix(".onnx"), ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after_engine = load_engine(served, "openvino", 1, cache_dir=cache)
    fresh = load_engine(served, "openvino", 1).infer(BATCH)  # no cache at all
    assert not after_engine.loaded_from_cache
    after = after_engine.infer(BATCH)
    np.testing.assert_array_equal(after, fresh)
    assert range_error(after, before) > 0.01


def test_an_unusable_cache_dir_is_a_warning_not_a_failure(model_path, tmp_path, caplog):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("in the way")
    with caplog.at_level(logging.WARNING):
        engine = load_engine(model_path, "openvino", 1, cache_dir=not_a_dir / "cache")
    assert engine.cache_dir is None and "OpenVINO cache off" in caplog.text
    assert engine.infer(BATCH).shape == (1, 96, 128)


def test_fp32_is_asked_for_explicitly_and_each_thread_count_is_its_own():
    # Left to itself OpenVINO computes in bf16 on CPUs with bf16 units: not the reference.
    assert compile_config(2, "fp32", None) == {
        "INFERENCE_NUM_THREADS": 2,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
    }
    assert compile_config(1, "bf16", Path("/c"))["INFERENCE_PRECISION_HINT"] == "bf16"
    assert compile_config(1, "bf16", Path("/c"))["CACHE_DIR"] == "/c"


def test_the_compiled_model_runs_as_configured(model_path):
    import openvino as ov

    engine = load_engine(model_path, "openvino", 1)
    compiled = engine._compiled
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    assert engine.precision == "fp32"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", DEFAULT_OPENVINO_CACHE_DIR), ("off", None), ("/var/cache/ov", Path("/var/cache/ov"))],
)
def test_cache_dir_setting(value, expected):
    env = {"MIDAS_OPENVINO_CACHE_DIR": value} if value else {}
    assert Settings.from_env(env).openvino_cache_dir == expected
