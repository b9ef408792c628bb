"""The benchmark's parsers (the benchmark itself is run by hand: scripts/bench.py)."""

import sys

import pytest

from devtools.support import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import bench

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
    _, _, env = bench.parse_layout("2x2+fixed", "torchscript")
    assert env["MIDAS_SHARE_CORES"] == "0"
    with pytest.raises(ValueError):
        bench.parse_layout("2x2+turbo", "onnxruntime")
