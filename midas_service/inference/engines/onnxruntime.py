"""ONNX Runtime backend (CPU execution provider)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from midas_service.inference.engines import ModelFileError

if TYPE_CHECKING:
    import numpy as np

MIN_BYTES = 1024


class OnnxRuntimeEngine:
    backend = "onnxruntime"
    precision = "fp32"  # the only one offered (inference/precision.py)

    def __init__(
        self,
        path: Path,
        threads: int,
        spinning: bool = False,
        precision: str = "fp32",  # load_engine admits fp32 only (inference/precision.py)
        cache_dir: Path | None = None,  # OpenVINO's; nothing to cache here
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Without spinning, idle pool threads sleep, so workers sharing cores do not steal each
        # other's CPU (docs/performance.md).
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if spinning else "0"
        )
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        props = self._session.get_modelmeta().custom_metadata_map
        self.threads = threads
        self.metadata = {key: json.loads(value) for key, value in props.items()}

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: batch})[0]


ENGINE = OnnxRuntimeEngine


def read_metadata(path: Path) -> dict[str, Any]:
    """A header check only: the metadata lives in the protobuf, which onnxruntime reads later."""
    head = path.read_bytes()[:1] if path.stat().st_size >= MIN_BYTES else b""
    if head != b"\x08":  # an ONNX ModelProto starts with field 1, ir_version (a varint)
        raise ModelFileError(f"{path} is not an ONNX model (too short or wrong header)")
    return {}
