"""One serving process's model: loaded in the background (``loading.load_model``), ready flag
for /readyz."""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import platform
import threading
import time
from collections.abc import Callable

from midas_service import loading
from midas_service.config import Settings
from midas_service.errors import ModelNotReady
from midas_service.inference import deviation, openmp
from midas_service.inference.engines import REGISTRY
from midas_service.inference.pipeline import DepthEstimator
from midas_service.loading import Measure, WorkerEngine

log = logging.getLogger(__name__)


@functools.cache
def runtime_versions() -> dict[str, str]:
    """Versions of what this worker runs with (the export-time torch is in the metadata)."""
    backends = tuple(name for backend in REGISTRY.values() for name in backend.packages)
    names = (*backends, "opencv-python-headless", "numpy", "flask", "gunicorn")
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


class ModelRuntime:
    """Owns the worker's estimator. ``start()`` loads it on a thread so probes answer meanwhile."""

    def __init__(
        self,
        settings: Settings,
        on_failure: Callable[[str], None] | None = None,
        measure_deviation: Measure | None = None,
    ) -> None:
        self.settings = settings
        self.on_failure = on_failure  # e.g. stop the worker: a model that failed stays failed
        self.measure_deviation = measure_deviation
        self.deviation: deviation.Deviation | None = None  # from fp32; measured if not fp32
        self._estimator: DepthEstimator[WorkerEngine] | None = None
        self._ready = threading.Event()
        self._finished = threading.Event()  # set after success and after failure
        self._lock = threading.Lock()
        self.error: str | None = None
        self.load_seconds: float | None = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` s while loading; True if ready. Returns early on failure."""
        self._finished.wait(timeout)
        return self.ready

    @property
    def estimator(self) -> DepthEstimator[WorkerEngine]:
        if not self._ready.is_set() or self._estimator is None:
            reason = "the model failed to load" if self.error else "the model is still loading"
            raise ModelNotReady(reason)
        return self._estimator

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.load, name="model-loader", daemon=True)
        thread.start()
        return thread

    def load(self) -> None:
        """Load the model with the whole policy (``midas_service.loading.load_model``)."""
        with self._lock:
            if self._ready.is_set():
                return
            start = time.perf_counter()
            try:
                loaded = loading.load_model(self.settings, self.measure_deviation)
            except Exception as exc:
                self.error = f"model failed to load: {exc}"
                log.exception("model failed to load")
                self._finished.set()
                if self.on_failure is not None:
                    self.on_failure(self.error)
                return
            self.deviation = loaded.deviation
            self._estimator = loaded.estimator
            self.load_seconds = time.perf_counter() - start
            self._ready.set()
            self._finished.set()
            log.info("model ready in %.2f s (%s)", self.load_seconds, loaded.engine.backend)

    def describe(self) -> dict[str, object]:
        """Metadata for /readyz and the page."""
        info: dict[str, object] = {
            "ready": self.ready,
            "backend": self.settings.backend,
            "precision": self.settings.precision,
            "pid": os.getpid(),
            "openmp": openmp.active_runtime(),
            "versions": runtime_versions(),
        }
        if self._estimator is not None:
            engine = self._estimator.engine
            info.update(metadata=engine.metadata, threads=engine.threads)
            info["thread_counts"] = list(engine.counts)
            info["share_cores"] = engine.sharing
            info["untrained"] = bool(engine.metadata.get("untrained"))
            info["load_seconds"] = round(self.load_seconds or 0.0, 3)
        if self.deviation is not None:
            info["deviation_from_fp32"] = self.deviation.as_dict()
        if self.error:
            info["error"] = self.error
        return info
