"""The deviation figures on synthetic maps whose answers are known, and the bf16 start gate."""

from __future__ import annotations

import numpy as np
import pytest

from midas_service.inference import deviation
from midas_service.inference.deviation import Deviation, compare, enforce_bound, ranks, spearman
from midas_service.inference.precision import PrecisionRefused

RAMP = np.linspace(0.0, 10.0, 64 * 48, dtype=np.float32).reshape(48, 64)  # range 10


def test_identical_maps_deviate_by_nothing():
    d = compare(RAMP, RAMP)
    assert (d.max_abs, d.mean_abs) == (0.0, 0.0)
    assert d.aligned_mean_abs == pytest.approx(0.0, abs=1e-12)
    assert d.spearman == pytest.approx(1.0)


def test_a_constant_offset_is_raw_deviation_but_aligns_away():
    d = compare(RAMP + 0.5, RAMP)
    assert d.max_abs == pytest.approx(0.05) and d.mean_abs == pytest.approx(0.05)
    assert d.aligned_mean_abs == pytest.approx(0.0, abs=1e-6)
    assert d.spearman == pytest.approx(1.0)


def test_scale_and_shift_align_away_even_when_reversed():
    assert compare(3.0 * RAMP - 7.0, RAMP).aligned_mean_abs == pytest.approx(0.0, abs=1e-6)
    flipped = compare(-RAMP, RAMP)
    assert flipped.aligned_mean_abs == pytest.approx(0.0, abs=1e-6)
    assert flipped.spearman == pytest.approx(-1.0)  # the order is reversed: near is far


def test_one_spike_is_its_size_at_most_and_its_share_on_average():
    got = RAMP.copy()
    got[10, 20] += 2.0  # 20 % of range at one pixel of 3072
    d = compare(got, RAMP)
    assert d.max_abs == pytest.approx(0.2, rel=1e-4)
    assert d.mean_abs == pytest.approx(0.2 / RAMP.size, rel=1e-3)


def test_aligned_mean_matches_an_independent_line_fit():
    rng = np.random.default_rng(5)
    reference = rng.random((32, 40))
    got = 0.8 * reference + 0.1 + 0.05 * rng.standard_normal(reference.shape)
    slope, intercept = np.polyfit(got.ravel(), reference.ravel(), 1)
    expected = np.abs(slope * got + intercept - reference).mean() / np.ptp(reference)
    assert compare(got, reference).aligned_mean_abs == pytest.approx(expected, rel=1e-9)


def test_ranks_share_ties_and_spearman_matches_scipy():
    np.testing.assert_array_equal(ranks(np.array([3.0, 1.0, 2.0, 2.0])), [4.0, 1.0, 2.5, 2.5])
    from scipy.stats import spearmanr

    rng = np.random.default_rng(6)
    a = rng.integers(0, 20, (30, 30)).astype(np.float32)  # many ties
    b = a + rng.integers(0, 8, a.shape)
    assert spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic, rel=1e-9)


def test_a_constant_map_does_not_divide_by_zero():
    flat = np.full((8, 8), 2.0, np.float32)
    d = compare(flat, flat)
    assert d.max_abs == 0.0 and d.spearman == 1.0
    assert np.isfinite(compare(RAMP[:8, :8], flat).max_abs)


def test_worst_takes_the_worst_of_each_figure():
    a = Deviation(0.05, 0.01, 0.012, 0.99)
    b = Deviation(0.03, 0.02, 0.008, 0.95)
    assert deviation.worst([a, b]) == Deviation(0.05, 0.02, 0.012, 0.95, photos=2)


def test_the_gate_refuses_above_the_bound_and_says_by_how_much():
    measured = Deviation(0.08, 0.013, 0.025, 0.98, photos=3)
    with pytest.raises(PrecisionRefused, match=r"aligned mean \|d\| 2\.50% .*3 example photos"):
        enforce_bound(measured, 0.02, "bf16")
    enforce_bound(measured, 0.025, "bf16")  # at the bound: served
    enforce_bound(Deviation(0.08, 0.013, 0.0113, 0.98), 0.02, "bf16")


def test_the_bundled_examples_are_found():
    names = [p.name for p in deviation.photos_in()]
    assert names == sorted(names) and {"astronaut.jpg", "chelsea.jpg", "coffee.jpg"} <= set(names)


# --- scripts/measure_deviation.py, on a real model ---


def run_script(*args):
    import subprocess
    import sys

    from devtools.support import ROOT

    return subprocess.run(
        [sys.executable, "-m", "scripts.measure_deviation", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_script_reports_each_photo_and_the_worst(model_path, photo_dir, tmp_path):
    import json

    out = tmp_path / "deviation.json"
    result = run_script(
        "--model", model_path, "--backend", "openvino", "--precision", "fp32",
        "--reference-backend", "onnxruntime", "--photos", photo_dir, "--json", out,
        "--threads", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "openvino fp32 against onnxruntime fp32" in result.stdout
    assert "worst of 4" in result.stdout and "coffee.png" in result.stdout
    report = json.loads(out.read_text())
    assert set(report["photos"]) == {"astronaut.png", "chelsea.png", "coffee.png", "rocket.png"}
    worst = report["worst"]
    assert 0 < worst["aligned_mean_abs"] < 1e-4 and worst["max_abs"] < 1e-3
    assert worst["spearman"] > 0.9999
    assert worst["max_abs"] == max(p["max_abs"] for p in report["photos"].values())


def test_script_exits_3_above_the_bound_and_2_when_the_engine_cannot_run(model_path):
    over = run_script(
        "--model", model_path, "--backend", "openvino", "--precision", "fp32",
        "--reference-backend", "onnxruntime", "--max-deviation", "0", "--threads", "1",
    )  # fmt: skip
    assert over.returncode == 3, over.stderr
    assert "worst of 3" in over.stdout  # the bundled examples, reported before the verdict
    assert "exceeds MIDAS_MAX_DEVIATION=0" in over.stderr
    refused = run_script("--model", model_path, "--backend", "torchscript")  # bf16 default
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "use MIDAS_BACKEND=openvino" in refused.stderr
