"""The experimental int8 path: it runs, keeps the metadata and reports its deviation honestly."""

import json
import subprocess
import sys

from midas_service.engine import load_engine
from tests.support import ROOT


def test_quantize_writes_an_int8_model_and_measures_it(model_path, tmp_path):
    model = tmp_path / model_path.name
    model.with_suffix(".onnx").write_bytes(model_path.with_suffix(".onnx").read_bytes())
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "quantize_int8.py"), "--model", str(model)],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(result.stdout)
    assert len(report["deviations"]) == 4 and report["int8_p50_ms"] > 0
    assert report["acceptable"] == (report["max_deviation_of_range"] <= 0.01)
    engine = load_engine(tmp_path / "midas_small.int8.pt", "onnxruntime")
    assert engine.metadata["quantization"].startswith("int8")
    assert "weights_sha256" in engine.metadata
