"""Inference backends behind one tiny interface: ``infer((1,3,h,w) float32) -> (1,h,w) float32``.

Serving code only needs the backend it runs: onnxruntime, or torch for TorchScript; never timm.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

METADATA_FILE = "midas.json"
BACKENDS = ("torchscript", "onnxruntime")
DEFAULT_BACKEND = "torchscript"  # the design's runtime; OpenMP waiting: midas_service/openmp.py
SUFFIXES = {"torchscript": ".pt", "onnxruntime": ".onnx"}
STATIC_SPECIALISATIONS = 20
# Written by the export into every model file; without them nothing says the weights are trained.
REQUIRED_METADATA = ("untrained", "weights_sha256")


class Engine(Protocol):
    backend: str
    threads: int
    metadata: dict[str, object]

    def infer(self, batch: np.ndarray) -> np.ndarray: ...


def available_cpus() -> int:
    """CPUs this process may use: the cgroup quota (containers) and affinity, not the host count."""
    count = len(os.sched_getaffinity(0))
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return count


def _cgroup_cpu_quota() -> float | None:
    try:  # cgroup v2: "max 100000" or "200000 100000"
        limit, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        return None if limit == "max" else int(limit) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def model_file(path: Path, backend: str) -> Path:
    """The export writes ``model.pt`` and ``model.onnx`` side by side; pick the backend's one."""
    return Path(path).with_suffix(SUFFIXES[backend])


class MissingMetadata(ValueError):
    """The model file lacks the export's metadata (untrained flag, weights hash)."""


def check_metadata(path: Path, metadata: dict[str, object]) -> None:
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise MissingMetadata(
            f"{path} has no export metadata ({', '.join(missing)} missing), so nothing says "
            "whether its weights are trained; export it with scripts/export_torchscript.py, or "
            "set MIDAS_ALLOW_NO_METADATA=1 to use it anyway"
        )


class TorchScriptEngine:
    backend = "torchscript"

    def __init__(self, path: Path, threads: int, spinning: bool = False) -> None:
        import torch

        torch.set_num_threads(threads)
        # oneDNN Graph fusion of the frozen channels-last graph: measured 1.3-1.6x faster than
        # plain or optimize_for_inference (README "Performance"). The profiling executor
        # specialises per input shape; the resize rule allows 15 shapes, so allow 20 static
        # specialisations instead of the default 2, past which it silently falls back.
        torch.jit.enable_onednn_fusion(True)
        torch.jit.set_fusion_strategy([("STATIC", STATIC_SPECIALISATIONS)])
        extra = {METADATA_FILE: ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit is deprecated"
            self._module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        self._torch = torch
        self.threads = threads
        self.metadata = json.loads(extra[METADATA_FILE] or "{}")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        # The oneDNN partitions keep the thread count of their first run (their compilation);
        # other engines of this process may run at other counts (core_share.py).
        if self._torch.get_num_threads() != self.threads:
            self._torch.set_num_threads(self.threads)
        with self._torch.inference_mode():
            return self._module(self._torch.from_numpy(batch)).numpy()


class OnnxRuntimeEngine:
    backend = "onnxruntime"

    def __init__(self, path: Path, threads: int, spinning: bool = False) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Without spinning, idle pool threads sleep, so workers sharing cores do not steal each
        # other's CPU: 2 workers x 2 threads measured 45 req/s at c=4 without, 28 with.
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


def load_engine(
    path: Path,
    backend: str = DEFAULT_BACKEND,
    threads: int | None = None,
    spinning: bool = False,
    allow_no_metadata: bool = False,
) -> Engine:
    """Open the model file of ``backend`` next to ``path`` with ``threads`` intra-op threads.

    ``spinning`` lets ONNX Runtime's idle threads busy-wait (faster alone, worse when several
    workers share the cores); TorchScript ignores it (OMP_WAIT_POLICY governs OpenMP).
    A file without the export's metadata raises MissingMetadata unless ``allow_no_metadata``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    path = model_file(path, backend)
    if not path.is_file():
        raise FileNotFoundError(
            f"model file {path} not found; create it with scripts/export_torchscript.py"
        )
    threads = threads or available_cpus()
    engine_class = TorchScriptEngine if backend == "torchscript" else OnnxRuntimeEngine
    engine = engine_class(path, threads, spinning)
    if allow_no_metadata and not all(key in engine.metadata for key in REQUIRED_METADATA):
        log.warning("%s has no export metadata; using it because it is explicitly allowed", path)
    else:
        check_metadata(path, engine.metadata)
    log.info("loaded %s with %s, %d threads", path, backend, threads)
    return engine
