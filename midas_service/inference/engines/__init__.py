"""Inference backends behind one tiny interface: ``infer((1,3,h,w) float32) -> (1,h,w) float32``.

Serving code only needs the backend it runs: onnxruntime, openvino, or torch for TorchScript;
never timm.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from midas_service.inference.precision import DEFAULT_PRECISION, check_precision

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

METADATA_FILE = "midas.json"
DEFAULT_BACKEND = "torchscript"  # the design's runtime; OpenMP waiting: inference/openmp.py


@dataclass(frozen=True)
class Backend:
    """One inference backend: its model file suffix and where its engine class lives.

    The class is imported only when an engine is loaded, so the Gunicorn master and the
    configuration never import torch, onnxruntime or openvino.
    """

    name: str
    suffix: str
    module: str  # the submodule of this package with ``ENGINE`` and ``read_metadata``
    packages: tuple[str, ...]  # the distributions whose versions /readyz reports

    def _module(self) -> Any:
        return importlib.import_module(f"{__name__}.{self.module}")

    def engine_class(self) -> Callable[..., Engine]:
        """``ENGINE(path, threads, spinning, precision=..., cache_dir=...)``."""
        return self._module().ENGINE

    def read_metadata(self, path: Path) -> dict[str, Any]:
        """The export metadata, read without loading the runtime (``ModelFileError`` if bad)."""
        return self._module().read_metadata(path)


REGISTRY: dict[str, Backend] = {
    backend.name: backend
    for backend in (
        Backend("torchscript", ".pt", "torchscript", ("torch",)),
        Backend("onnxruntime", ".onnx", "onnxruntime", ("onnxruntime",)),
        # The same ONNX file as ONNX Runtime's, compiled by OpenVINO's CPU plugin.
        Backend("openvino", ".onnx", "openvino", ("openvino",)),
    )
}
BACKENDS = tuple(REGISTRY)
# Written by the export into every model file; without them nothing says the weights are trained.
REQUIRED_METADATA = ("untrained", "weights_sha256")
UNTRAINED_MESSAGE = (
    "the model file was exported with random weights; set "
    "MIDAS_RANDOM_WEIGHTS=1 to use it anyway (meaningless depth)"
)


class ModelFileError(Exception):
    """The model file cannot be served; the message says why and what to do."""


class UntrainedModelRefused(ModelFileError):
    """The model has random weights and MIDAS_RANDOM_WEIGHTS=1 was not given."""


def refuse_untrained(path: Path, metadata: dict[str, Any], allow_untrained: bool) -> None:
    """The one untrained-model policy: the master, the workers and the CLIs all call this."""
    if metadata.get("untrained") and not allow_untrained:
        raise UntrainedModelRefused(f"{path}: {UNTRAINED_MESSAGE}")


class Engine(Protocol):
    backend: str
    threads: int
    precision: str
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
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def model_file(path: Path, backend: str) -> Path:
    """The export writes ``model.pt`` and ``model.onnx`` side by side; pick the backend's one."""
    return Path(path).with_suffix(REGISTRY[backend].suffix)


class MissingMetadata(ValueError):
    """The model file lacks the export's metadata (untrained flag, weights hash)."""


def check_metadata(path: Path, metadata: dict[str, object]) -> None:
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise MissingMetadata(
            f"{path} has no export metadata ({', '.join(missing)} missing), so nothing says "
            "whether its weights are trained; export it with midas-depth export, or "
            "set MIDAS_ALLOW_NO_METADATA=1 to use it anyway"
        )


def load_engine(
    path: Path,
    backend: str = DEFAULT_BACKEND,
    threads: int | None = None,
    spinning: bool = False,
    allow_no_metadata: bool = False,
    precision: str = DEFAULT_PRECISION,
    cache_dir: Path | None = None,
) -> Engine:
    """Open the model file of ``backend`` next to ``path`` with ``threads`` intra-op threads.

    ``spinning`` lets ONNX Runtime's idle threads busy-wait (faster alone, worse when several
    workers share the cores); TorchScript ignores it (OMP_WAIT_POLICY governs OpenMP).
    A file without the export's metadata raises MissingMetadata unless ``allow_no_metadata``.
    ``precision`` other than fp32 raises ``PrecisionRefused`` where it is not fast
    (``midas_service.inference.precision``). ``cache_dir``: OpenVINO's compiled-model cache.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    check_precision(backend, precision)
    path = model_file(path, backend)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} not found; create it with midas-depth export")
    threads = threads or available_cpus()
    engine = REGISTRY[backend].engine_class()(
        path, threads, spinning, precision=precision, cache_dir=cache_dir
    )
    if allow_no_metadata and not all(key in engine.metadata for key in REQUIRED_METADATA):
        log.warning("%s has no export metadata; using it because it is explicitly allowed", path)
    else:
        check_metadata(path, engine.metadata)
    log.info("loaded %s with %s %s, %d threads", path, backend, precision, threads)
    return engine
