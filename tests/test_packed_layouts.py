"""The TorchScript engine gives each convolution its weights in the layout oneDNN wants for
every network input shape and thread count: no weight is converted on a call, and the numbers
are those of the loaded layout."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from devtools.support import ROOT
from midas_service.inference.engines import available_cpus
from midas_service.inference.engines.torchscript import TorchScriptEngine
from midas_service.inference.preprocess import NETWORK_SHAPES

# A oneDNN reorder whose source is a blocked layout (OIhw16o, Acdb48a, ...): weights already
# packed, converted again. Plain layouts are all lower case (abcd, acdb).
BLOCKED_TO_BLOCKED = re.compile(r",exec,cpu,reorder,.*src:\S*blocked:\S*[A-Z]\S*::")


@pytest.fixture(scope="module")
def engines(model_path) -> dict[int, TorchScriptEngine]:
    both = TorchScriptEngine(model_path, 2)
    return {2: both, 1: both.with_threads(1)}


def batch(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(height * 1000 + width).random((1, 3, height, width), np.float32)


def test_no_weight_is_converted_on_a_call_at_any_shape_or_thread_count(engines, capfd):
    import torch

    converted = {}
    for height, width in NETWORK_SHAPES:
        for threads, engine in engines.items():
            engine.infer(batch(height, width))  # the first call at a shape finds its layouts
            capfd.readouterr()
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                engine.infer(batch(height, width))
            lines = capfd.readouterr().out.splitlines()
            assert any(",exec,cpu,convolution," in line for line in lines)  # verbose is on
            reorders = [line for line in lines if BLOCKED_TO_BLOCKED.search(line)]
            if reorders:
                converted[(height, width, threads)] = reorders
    assert converted == {}


def test_other_layouts_give_the_loaded_layouts_numbers_for_little_memory(engines, model_path):
    for engine in engines.values():
        for height, width in NETWORK_SHAPES:
            engine.infer(batch(height, width))
    layouts = engines[2].layouts
    assert layouts.extra_bytes < 0.1 * layouts.loaded_bytes
    loaded_only = TorchScriptEngine(model_path, 2)
    loaded_only.layouts.enabled = False  # every call converts what it must
    for threads, engine in engines.items():
        other = loaded_only if threads == 2 else loaded_only.with_threads(1)
        for height, width in NETWORK_SHAPES:
            np.testing.assert_array_equal(
                engine.infer(batch(height, width)), other.infer(batch(height, width))
            )


def test_the_layouts_bench_prints_every_shape_at_both_thread_counts(model_path):
    result = subprocess.run(
        [sys.executable, "-m", "devtools.layouts_bench", "--model", str(model_path), "--runs", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    rows = re.findall(
        r"^\| (\d+)x(\d+) \| (\d) \| ([\d.]+) \| ([\d.]+) \| ([-+][\d.]+) \|$",
        result.stderr,
        re.MULTILINE,
    )
    shapes = {(int(h), int(w)) for h, w, *_ in rows}
    assert shapes == set(NETWORK_SHAPES)
    assert {int(threads) for _, _, threads, *_ in rows} == {1, available_cpus()}
    assert all(float(without) > 0 and float(with_) > 0 for *_, without, with_, _ in rows)
