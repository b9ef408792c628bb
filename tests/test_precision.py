"""MIDAS_PRECISION: fp32 by default; bf16 only where it is offered and fast, and close to fp32.

The build machine has no bf16 units (AMD EPYC Zen 2), so bf16 itself cannot run here: these
tests prove the refusals for real, and the deviation gate with an injected measurement.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from devtools.servers import gunicorn
from midas_service.config import ConfigError, Settings
from midas_service.inference import precision
from midas_service.inference.deviation import Deviation
from midas_service.inference.engines import load_engine
from midas_service.inference.precision import PrecisionRefused, check_precision, cpu_flags
from midas_service.loading import load_worker_engine, measure_against_fp32
from midas_service.serving.runtime import ModelRuntime

CPU_HAS_BF16 = precision.has_bf16_units(cpu_flags())
needs_no_bf16 = pytest.mark.skipif(CPU_HAS_BF16, reason="this CPU has bf16 units")


def test_fp32_is_the_default_everywhere():
    assert Settings().precision == "fp32" and Settings.from_env({}).precision == "fp32"
    for backend in ("torchscript", "onnxruntime", "openvino"):
        check_precision(backend, "fp32", frozenset())


def test_bf16_is_offered_by_openvino_only_and_only_with_bf16_units():
    check_precision("openvino", "bf16", frozenset({"avx2", "avx512_bf16"}))
    check_precision("openvino", "bf16", frozenset({"amx_bf16"}))
    with pytest.raises(PrecisionRefused, match=r"needs a CPU with bf16 units .*MIDAS_PRECISION"):
        check_precision("openvino", "bf16", frozenset({"avx2", "avx512f", "avx512_vnni"}))
    for backend in ("torchscript", "onnxruntime"):
        with pytest.raises(PrecisionRefused, match="use MIDAS_BACKEND=openvino"):
            check_precision(backend, "bf16", frozenset({"amx_bf16"}))


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16 amx_tile\n\nflags : other\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "amx_bf16", "amx_tile"}
    assert cpu_flags(tmp_path / "absent") == frozenset()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MIDAS_PRECISION": "fp16"}, "MIDAS_PRECISION must be one of fp32, bf16"),
        ({"MIDAS_MAX_DEVIATION": "2"}, "MIDAS_MAX_DEVIATION must be between 0 and 1"),
        ({"MIDAS_MAX_DEVIATION": "lots"}, "MIDAS_MAX_DEVIATION must be a number"),
    ],
)
def test_bad_settings_are_refused(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_settings_are_read():
    settings = Settings.from_env({"MIDAS_PRECISION": "BF16", "MIDAS_MAX_DEVIATION": "0.01"})
    assert (settings.precision, settings.max_deviation) == ("bf16", 0.01)
    assert Settings().max_deviation == 0.02


@needs_no_bf16
def test_this_cpu_refuses_bf16_when_the_engine_loads(model_path):
    with pytest.raises(PrecisionRefused, match="bf16 units"):
        load_engine(model_path, "openvino", 1, precision="bf16")


@needs_no_bf16
def test_openvino_is_asked_too_when_cpuinfo_claims_bf16(model_path, monkeypatch):
    """A kernel can list a flag the runtime cannot use (VMs): OpenVINO's own view decides."""
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    with pytest.raises(PrecisionRefused, match="OpenVINO's CPU plugin lacks BF16"):
        load_engine(model_path, "openvino", 1, precision="bf16")


@needs_no_bf16
@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ("openvino", r"needs a CPU with bf16 units"),
        ("torchscript", r"TorchScript bf16 is not offered.*MIDAS_BACKEND=openvino"),
    ],
)
def test_gunicorn_master_refuses_bf16_before_any_fork(model_path, tmp_path, backend, message):
    with gunicorn(
        model_path, tmp_path, wait=False, MIDAS_BACKEND=backend, MIDAS_PRECISION="bf16"
    ) as (url, process):
        returncode = process.wait(timeout=120)
        log = (tmp_path / f"gunicorn-{url.rsplit(':', 1)[1]}.log").read_text()
    assert returncode == 3, log  # Gunicorn's WORKER_BOOT_ERROR, like the other start checks
    errors = re.findall(r"cannot start: .*", log)
    assert len(errors) == 1 and re.search(message, errors[0]), log
    assert "Booting worker" not in log and "Traceback" not in log


# --- the deviation gate: a real fp32 engine posing as bf16, with the measurement injected ---


@pytest.fixture
def posing_as_bf16(model_path, monkeypatch):
    """Settings for openvino bf16 whose worker engine is really fp32 (no bf16 here)."""
    settings = Settings(
        model_path=model_path,
        backend="openvino",
        precision="bf16",
        threads=1,
        share_cores="off",
        allow_untrained=True,
        warmup_runs=1,
        openvino_cache_dir=None,
    )

    def load(given: Settings):
        engine = load_worker_engine(dataclasses.replace(given, precision="fp32"))
        engine.precision = "bf16"
        for per_count in engine.engines.values():  # the deviation is measured on one of these
            per_count.precision = "bf16"
        return engine

    monkeypatch.setattr("midas_service.loading.load_worker_engine", load)
    return settings


def test_bf16_too_far_from_fp32_does_not_start(posing_as_bf16):
    failures: list[str] = []
    measured = Deviation(0.09, 0.03, 0.031, 0.97, photos=3)
    runtime = ModelRuntime(
        posing_as_bf16, on_failure=failures.append, measure_deviation=lambda s, e: measured
    )
    runtime.load()
    assert not runtime.ready
    assert len(failures) == 1 and "MIDAS_MAX_DEVIATION=0.02" in failures[0]
    assert "3.10%" in failures[0]


def test_bf16_within_the_bound_serves_and_readyz_shows_how_far(posing_as_bf16):
    measured = Deviation(0.06, 0.012, 0.0115, 0.988, photos=3)
    seen = []
    runtime = ModelRuntime(
        posing_as_bf16, measure_deviation=lambda s, e: seen.append(e.precision) or measured
    )
    runtime.load()
    assert runtime.ready and seen == ["bf16"]
    info = runtime.describe()
    assert info["precision"] == "bf16"
    assert info["deviation_from_fp32"] == {
        "max_abs": 0.06,
        "mean_abs": 0.012,
        "aligned_mean_abs": 0.0115,
        "spearman": 0.988,
        "photos": 3,
    }


def test_fp32_is_not_measured_and_readyz_says_fp32(model_path):
    def never(settings, engine):
        raise AssertionError("fp32 is the reference: nothing to measure")

    settings = Settings(
        model_path=model_path, backend="openvino", threads=1, share_cores="off",
        allow_untrained=True, warmup_runs=0, openvino_cache_dir=None,
    )  # fmt: skip
    runtime = ModelRuntime(settings, measure_deviation=never)
    runtime.load()
    info = runtime.describe()
    assert runtime.ready and info["precision"] == "fp32" and "deviation_from_fp32" not in info


def test_the_real_measurement_runs_both_engines_on_the_example_photos(model_path):
    """What a bf16 worker measures at start, here with fp32 on both sides (no bf16 here)."""
    settings = Settings(model_path=model_path, backend="openvino", openvino_cache_dir=None)
    engine = load_engine(model_path, "openvino", 1)
    measured = measure_against_fp32(settings, engine)
    assert measured.photos == 3
    assert measured.aligned_mean_abs < 1e-6 and measured.max_abs < 1e-6
    assert measured.spearman == pytest.approx(1.0)


@pytest.mark.skipif(not CPU_HAS_BF16, reason="this CPU has no bf16 units")
def test_the_gate_compares_real_bf16_with_a_fp32_reference(model_path):
    """On a CPU with bf16 units: the start gate's figure is bf16 against fp32, the one this
    test computes with an fp32 engine of its own; a reference built in the served precision
    would compare bf16 with itself and find nothing."""
    from midas_service.images.decode import read_image_file
    from midas_service.inference import deviation
    from midas_service.inference.pipeline import DepthEstimator

    settings = Settings(
        model_path=model_path, backend="openvino", precision="bf16", openvino_cache_dir=None
    )
    served = load_engine(model_path, "openvino", 1, precision="bf16")
    measured = measure_against_fp32(settings, served)
    fp32 = load_engine(model_path, "openvino", 1)
    photos = [read_image_file(path) for path in deviation.photos_in()]
    expected = deviation.worst(
        deviation.measure(DepthEstimator(served), DepthEstimator(fp32), photos)
    )
    assert expected.max_abs > 1e-4, "bf16 computed exactly what fp32 does: not bf16"
    assert measured.photos == expected.photos == len(photos)
    assert measured.max_abs == pytest.approx(expected.max_abs, rel=1e-3)
    assert measured.aligned_mean_abs == pytest.approx(expected.aligned_mean_abs, rel=1e-3)


def test_a_different_engine_measures_far(model_path, photo_dir):
    """The measurement sees a real difference: the ONNX network with every output doubled
    plus a ramp is far in raw and aligned terms."""
    from midas_service.images.decode import read_image_file
    from midas_service.inference import deviation
    from midas_service.inference.pipeline import DepthEstimator

    reference = load_engine(model_path, "onnxruntime", 1)

    class Skewed:
        backend, threads, precision, metadata = "test", 1, "bf16", {}

        def infer(self, batch: np.ndarray) -> np.ndarray:
            depth = reference.infer(batch)
            ramp = np.linspace(0, float(np.ptp(depth)), depth.shape[-1], dtype=np.float32)
            return 2 * depth + ramp

    rgb = [read_image_file(photo_dir / "coffee.png")]
    (d,) = deviation.measure(DepthEstimator(Skewed()), DepthEstimator(reference), rgb)
    assert d.max_abs > 0.5 and d.aligned_mean_abs > 0.05 and d.spearman < 0.99


# --- the batch CLI honours MIDAS_BACKEND / MIDAS_PRECISION, and --backend / --precision ---


def run_cli(*args, **env):
    import os
    import subprocess
    import sys

    from devtools.support import ROOT

    return subprocess.run(
        [sys.executable, "-m", "midas_service", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=300,
    )


def test_cli_takes_backend_and_precision_from_the_environment(model_path, photo_dir, tmp_path):
    from midas_service.images.decode import read_image_file
    from midas_service.inference.pipeline import DepthEstimator
    from tests.conftest import range_error

    result = run_cli(
        "predict", photo_dir / "coffee.png", "--model", model_path, "--output-dir", tmp_path,
        "--save", "npy", "--threads", "1", MIDAS_BACKEND="openvino", MIDAS_PRECISION="fp32",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1 images done, 0 failed" in result.stderr and "(openvino fp32)" in result.stderr
    expected = DepthEstimator(load_engine(model_path, "onnxruntime", 1)).predict(
        read_image_file(photo_dir / "coffee.png")
    )
    assert range_error(np.load(tmp_path / "coffee.npy"), expected) <= 1e-4


@needs_no_bf16
def test_cli_refuses_bf16_here_with_one_line(model_path, photo_dir, tmp_path):
    from_env = run_cli(
        "predict", photo_dir / "coffee.png", "--model", model_path, "--output-dir", tmp_path,
        MIDAS_BACKEND="openvino", MIDAS_PRECISION="bf16",
    )  # fmt: skip
    flag = run_cli(
        "predict", photo_dir / "coffee.png", "--model", model_path, "--output-dir", tmp_path,
        "--backend", "torchscript", "--precision", "bf16",
    )  # fmt: skip
    for result, message in ((from_env, "bf16 units"), (flag, "use MIDAS_BACKEND=openvino")):
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []
