"""The experimental int8 path: it runs, keeps the metadata and reports its deviation honestly."""

import json
import subprocess
import sys

from devtools.support import ROOT
from midas_service.inference.engines import load_engine


def run_quantize(model, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scripts.quantize_int8", "--model", str(model), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_quantize_writes_an_int8_model_and_exit_code_follows_the_bound(model_path, tmp_path):
    model = tmp_path / model_path.name
    model.with_suffix(".onnx").write_bytes(model_path.with_suffix(".onnx").read_bytes())
    result = run_quantize(model)
    report = json.loads(result.stdout)  # the report is printed whatever the verdict
    assert len(report["deviations"]) == 4 and report["int8_p50_ms"] > 0
    deviation = report["max_deviation_of_range"]
    assert deviation > 0
    # The default bound is 1 % of the range: outside it the script must fail (exit 3).
    assert result.returncode == (3 if deviation > 0.01 else 0), result.stderr
    engine = load_engine(tmp_path / "midas_small.int8.pt", "onnxruntime")
    assert engine.metadata["quantization"].startswith("int8")
    assert "weights_sha256" in engine.metadata
    # The other side of the bound, set explicitly, gives the other exit code.
    other = f"{deviation * 0.5:.6g}" if deviation <= 0.01 else f"{deviation * 2:.6g}"
    again = run_quantize(model, "--max-deviation", other)
    assert json.loads(again.stdout)["max_deviation_of_range"] > 0
    assert again.returncode == (0 if deviation > 0.01 else 3), again.stderr
