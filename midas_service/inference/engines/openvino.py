"""OpenVINO backend (CPU plugin): the export's ONNX file, compiled for latency.

The ONNX file keeps dynamic height and width, so one compiled model serves every size the
resize rule gives. Compiled models are cached in MIDAS_OPENVINO_CACHE_DIR, one blob per
model content and precision (the thread count is applied when a blob loads), so a restart
skips most of the compilation; old models' blobs stay until the folder is cleared.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from midas_service.inference.engines import ModelFileError
from midas_service.inference.engines.onnxruntime import read_metadata as read_onnx_header
from midas_service.inference.precision import PrecisionRefused, no_bf16_units_message

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}
METADATA_SECTION = "framework"  # where OpenVINO's ONNX reader puts the file's metadata_props


def compile_config(threads: int, precision: str, cache_dir: Path | None) -> dict[str, Any]:
    """The CPU plugin's settings: this many threads, one stream, the precision asked for.

    Without an explicit ``f32`` hint OpenVINO picks bf16 by itself on CPUs with bf16 units,
    which would not give the reference numbers.
    """
    config: dict[str, Any] = {
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision],
    }
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
    return config


def usable_cache_dir(cache_dir: Path | None) -> Path | None:
    """``cache_dir``, created private to this user, or None (no cache) if it cannot be."""
    if cache_dir is None:
        return None
    try:
        cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not os.access(cache_dir, os.W_OK | os.X_OK):
            raise PermissionError(f"{cache_dir} is not writable")
    except OSError as exc:
        log.warning("OpenVINO cache off: cannot use %s (%s)", cache_dir, exc)
        return None
    return cache_dir


class OpenVinoEngine:
    backend = "openvino"

    def __init__(
        self,
        path: Path,
        threads: int,
        spinning: bool = False,
        precision: str = "fp32",
        cache_dir: Path | None = None,
    ) -> None:
        import openvino as ov

        core = ov.Core()
        if precision == "bf16" and "BF16" not in core.get_property(
            "CPU", "OPTIMIZATION_CAPABILITIES"
        ):
            raise PrecisionRefused(no_bf16_units_message("OpenVINO's CPU plugin lacks BF16"))
        model = core.read_model(str(path))  # metadata is not kept in the compiled blob
        self.metadata = _metadata(model)
        self.cache_dir = usable_cache_dir(cache_dir)
        # From the Model, not the path: a path's cache entry does not see the weights, so new
        # weights at the same path with the same size and mtime (cp -p, rsync -a) got the old
        # compiled blob. A Model's key hashes its graph and weights.
        self._compiled = core.compile_model(
            model, "CPU", compile_config(threads, precision, self.cache_dir)
        )
        self._request = self._compiled.create_infer_request()
        self.threads = threads
        self.precision = precision
        self.loaded_from_cache = bool(self._compiled.get_property("LOADED_FROM_CACHE"))
        log.info(
            "OpenVINO %s, %d threads: %s",
            precision,
            threads,
            f"compiled model from {self.cache_dir}" if self.loaded_from_cache else "compiled",
        )

    def infer(self, batch: np.ndarray) -> np.ndarray:
        # share_inputs: no copy of the (contiguous float32) batch into OpenVINO's tensor.
        self._request.infer({0: batch}, share_inputs=True)
        return self._request.get_output_tensor(0).data.copy()


def _metadata(model: Any) -> dict[str, Any]:
    """The export's metadata_props (JSON values, as written by the exporter)."""
    if not model.has_rt_info([METADATA_SECTION]):
        return {}
    section = model.get_rt_info([METADATA_SECTION]).astype(dict)
    metadata: dict[str, Any] = {}
    for key, value in section.items():
        text = value.astype(str)
        try:
            metadata[key] = json.loads(text)
        except ValueError as exc:
            raise ModelFileError(f"metadata {key!r} is not JSON: {text[:80]!r}") from exc
    return metadata


ENGINE = OpenVinoEngine


def read_metadata(path: Path) -> dict[str, Any]:
    """The same header check as ONNX Runtime's (one file serves both backends)."""
    return read_onnx_header(path)
