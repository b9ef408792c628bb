"""The benchmark's parsers and its engine loop (the benchmark itself is run by hand:
python -m devtools.bench)."""

import sys
from pathlib import Path

import pytest

from devtools import bench

WRK_OUTPUT = """Running 8s test @ http://127.0.0.1:8000/predict
  2 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    87.00ms   20.00ms 200.00ms   70.00%
  Latency Distribution
     50%   85.10ms
     75%   95.00ms
     90%  110.00ms
     99%    1.20s
  364 requests in 8.01s, 8.00MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:     45.45
Transfer/sec:      1.00MB
"""


def test_parse_wrk_reads_rate_percentiles_and_errors():
    result = bench.parse_wrk(WRK_OUTPUT)
    assert result["requests_per_s"] == 45.45 and result["requests"] == 364
    assert result["p50_ms"] == 85.1 and result["p90_ms"] == 110.0 and result["p99_ms"] == 1200.0
    assert result["errors"] == 6


def test_parse_layout_options():
    assert bench.parse_layout("2x1", "onnxruntime") == (
        2,
        1,
        {"MIDAS_THREADS": "1", "MIDAS_BACKEND": "onnxruntime"},
    )
    _, _, env = bench.parse_layout("2x2+spin+torchscript", "onnxruntime")
    assert env["MIDAS_ORT_SPINNING"] == "1" and env["MIDAS_BACKEND"] == "torchscript"
    _, _, env = bench.parse_layout("2x2+passive", "torchscript")
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["LD_PRELOAD"] == ""
    _, _, env = bench.parse_layout("2x2+off", "torchscript")
    assert env["MIDAS_SHARE_CORES"] == "off"
    with pytest.raises(ValueError):
        bench.parse_layout("2x2+turbo", "onnxruntime")


SMAPS_ROLLUP = """55d0c0a00000-7ffc4d1f2000 ---p 00000000 00:00 0                          [rollup]
Rss:             1150000 kB
Pss:              850000 kB
Pss_Dirty:        600000 kB
Shared_Clean:     300000 kB
Shared_Dirty:          0 kB
Private_Clean:     40960 kB
Private_Dirty:    614400 kB
Referenced:      1100000 kB
Anonymous:        620000 kB
Swap:                  0 kB
"""


def test_memory_is_read_from_smaps_rollup():
    memory = bench.smaps_rollup(SMAPS_ROLLUP)
    assert memory["pss_mb"] == 850000 / 1024 and memory["rss_mb"] == 1150000 / 1024
    assert memory["private_mb"] == 640.0 and memory["private_dirty_mb"] == 600.0


def test_memory_of_a_real_process_is_plausible():
    import os
    from pathlib import Path

    memory = bench.smaps_rollup(Path(f"/proc/{os.getpid()}/smaps_rollup").read_text())
    assert 0 < memory["private_mb"] <= memory["pss_mb"] <= memory["rss_mb"]


def test_backend_and_precision_layouts():
    _, _, env = bench.parse_layout("2x2+openvino+bf16", "torchscript")
    assert env["MIDAS_BACKEND"] == "openvino" and env["MIDAS_PRECISION"] == "bf16"


def test_every_input_shape_of_the_resize_rule_is_visited():
    import cv2
    import numpy as np

    from midas_service.inference.preprocess import network_size

    shapes = set()
    for jpeg in bench.every_shape_photos():
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        shapes.add(network_size(*image.shape[:2]))
    assert len(shapes) == 15 and all(256 in shape for shape in shapes)


def test_layout_as_backend_precision_and_shape():
    workers, threads, env = bench.parse_layout("openvino:bf16:2x2", "torchscript")
    assert (workers, threads) == (2, 2)
    assert env["MIDAS_BACKEND"] == "openvino" and env["MIDAS_PRECISION"] == "bf16"
    _, _, env = bench.parse_layout("torchscript:fp32:2x1+turns", "onnxruntime")
    assert env == {
        "MIDAS_THREADS": "1",
        "MIDAS_BACKEND": "torchscript",
        "MIDAS_SHARE_CORES": "turns",
    }
    with pytest.raises(ValueError):
        bench.parse_layout("openvino:int4:2x2", "torchscript")


def test_server_timing_stages_are_read():
    header = (
        "cache;desc=miss;dur=0.05, queue;dur=0.01, threads;desc=2, decode;dur=1.25, total;dur=9.5"
    )
    assert bench.parse_server_timing(header) == {
        "cache": 0.05,
        "queue": 0.01,
        "decode": 1.25,
        "total": 9.5,
    }


def test_engines_under_load_follow_core_sharing(monkeypatch):
    monkeypatch.setattr(bench, "available_cpus", lambda: 2)
    torchscript, openvino = {"MIDAS_BACKEND": "torchscript"}, {"MIDAS_BACKEND": "openvino"}
    assert bench.engines_under_load(2, 2, torchscript) == (2, 1)  # auto: split
    assert bench.engines_under_load(1, 2, torchscript) == (1, 2)
    assert bench.engines_under_load(2, 2, {**torchscript, "MIDAS_SHARE_CORES": "off"}) == (2, 2)
    assert bench.engines_under_load(2, 2, openvino) == (1, 2)  # auto: turns
    assert bench.engines_under_load(2, 2, {**openvino, "MIDAS_SHARE_CORES": "split"}) == (2, 1)


def served_row(c1: float, model: float, c4: float, engine: float, errors: int, pss: float):
    return {
        "layout": "torchscript:fp32:2x2",
        "backend": "torchscript",
        "precision": "fp32",
        "default_path": True,
        "workers": 2,
        "engines_under_load": 2,
        "threads_under_load": 1,
        "gunicorn_c1": {"p50_ms": c1},
        "model_only_p50_ms": model,
        "overhead_ms": c1 - model,
        "engine_only_per_s": engine,
        "wrk": {4: {"requests_per_s": c4}, 8: {"errors": errors}},
        "memory_after_every_shape": [{"pss_mb": pss}, {"pss_mb": pss - 10}],
    }


def test_targets_judge_each_bound():
    report = {
        "ort_reference_p50_ms": 25.0,
        "machine": {"server_torch": "2.13.0 (CPU build)"},
        "layouts": [served_row(c1=28.0, model=25.0, c4=36.0, engine=40.0, errors=0, pss=550)],
    }
    verdicts = {t["target"]: t["pass"] for t in bench.targets(report)}
    assert all(verdicts.values()), verdicts
    report["layouts"] = [served_row(c1=34.0, model=25.0, c4=30.0, engine=40.0, errors=2, pss=700)]
    verdicts = {t["target"]: t["pass"] for t in bench.targets(report)}
    assert not any(verdicts.values()), verdicts


def test_ratio_targets_use_the_yardstick_measured_in_the_layouts_own_rounds():
    """A machine that slowed down between the reference run and the layout must not pass for
    a fast service: the ORT figure from the layout's own rounds decides."""
    row = served_row(c1=34.0, model=30.0, c4=30.0, engine=40.0, errors=0, pss=550)
    report = {
        "ort_reference_p50_ms": 40.0,  # before the layouts: the c=1 bound would pass
        "machine": {"server_torch": "2.13.0 (CPU build)"},
        "layouts": [{**row, "ort_model_only_p50_ms": 25.0}],
    }
    verdicts = {t["target"]: t for t in bench.targets(report)}
    c1 = verdicts["fp32 c=1 <= 1.3x ORT fp32 model-only"]
    assert c1["pass"] is False and "1.360x of 25.0" in c1["value"]
    c4 = verdicts["fp32 c=4 >= 0.9x of 1/ORT fp32 model-only"]
    assert c4["pass"] is False and "0.750x of 40.0/s" in c4["value"]


def test_engine_loop_runs_in_rounds_between_other_measurements(random_model_path: Path) -> None:
    """The bench's model-only figure comes from one warm engine process run in rounds
    interleaved with the served requests: each round answers with its own samples."""
    env = {"MIDAS_BACKEND": "torchscript"}
    with bench.engine_loops(
        random_model_path, sys.executable, env, "torchscript", "fp32", 1, 1, (64, 64)
    ) as run:
        rounds = [run(0.05)[0] for _ in range(2)]
    for result in rounds:
        assert result["count"] >= 1
        assert len(result["samples_ms"]) == result["count"]
        assert result["min_ms"] <= result["p50_ms"]
        assert 0 < sum(result["samples_ms"]) <= result["seconds"] * 1000
