"""One worker's model: loaded and warmed in the background, ready flag for /readyz."""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import platform
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from midas_service.config import Settings
from midas_service.images.decode import read_image_file
from midas_service.inference import core_share, deviation, openmp
from midas_service.inference.engines import (
    REGISTRY,
    Engine,
    available_cpus,
    load_engine,
    refuse_untrained,
)
from midas_service.inference.pipeline import DepthEstimator, check_finite
from midas_service.inference.preprocess import to_network_input

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


class ModelNotReady(Exception):
    """The model is still loading, or failed to load."""


# OpenMP keeps one thread team per calling thread: these backends' engines run on one
# dedicated thread. ONNX Runtime and OpenVINO own their thread pools and are called directly
# (one request computes at a time per worker), which saves two thread hand-offs per request.
OWN_THREAD_BACKENDS = ("torchscript",)


class WorkerEngine:
    """The worker's inference: one engine per thread count; TorchScript's on one dedicated thread.

    Each inference takes the largest thread count that fits the cores other workers leave free
    at that moment (``midas_service.inference.core_share``). Requests are handled on several threads
    (gthread), and OpenMP (TorchScript) keeps one thread team per calling thread: called from
    each request thread in turn, a worker would grow one team per thread. One caller keeps it
    at MIDAS_THREADS inference threads, and the warm-up warms the very thread that serves.
    """

    def __init__(self, engines: dict[int, Engine], cores: int) -> None:
        self.engines = engines
        self.counts = tuple(sorted(engines, reverse=True))
        self.cores = cores
        first = engines[self.counts[0]]
        self.backend, self.threads, self.metadata = first.backend, first.threads, first.metadata
        self.precision = first.precision
        self.last_threads = self.counts[0]
        self._thread = (
            ThreadPoolExecutor(1, thread_name_prefix="inference")
            if self.backend in OWN_THREAD_BACKENDS
            else None
        )

    def infer(self, batch: np.ndarray, threads: int | None = None) -> np.ndarray:
        """Run on the inference thread with ``threads`` (default: what the cores allow now)."""
        if threads is None:
            threads = core_share.threads_for_next_inference(self.counts, self.cores)
        self.last_threads = threads
        if self._thread is None:
            return self.engines[threads].infer(batch)
        return self._thread.submit(self.engines[threads].infer, batch).result()

    def warm_up(self, runs: int) -> None:
        """``runs`` inferences with every engine, on the inference thread that will serve
        (each thread count compiles its own oneDNN kernels); NonFiniteDepth if one is broken."""
        batch = to_network_input(np.full((480, 640, 3), 0.5, dtype=np.float32))
        for threads in self.counts:
            for _ in range(runs):
                check_finite(self.infer(batch, threads)[0])


def load_worker_engine(settings: Settings) -> WorkerEngine:
    """The model at MIDAS_THREADS and, with MIDAS_SHARE_CORES, at each smaller share."""
    cores = available_cpus()
    threads = settings.threads or cores
    counts = core_share.thread_counts(threads) if settings.share_cores else (threads,)
    engines = {
        count: load_engine(
            settings.model_path,
            settings.backend,
            count,
            settings.ort_spinning,
            allow_no_metadata=settings.allow_no_metadata,
            precision=settings.precision,
            cache_dir=settings.openvino_cache_dir,
        )
        for count in counts
    }
    return WorkerEngine(engines, cores)


def measure_against_fp32(settings: Settings, engine: Engine) -> deviation.Deviation:
    """The served engine against the same backend in fp32 on the bundled example photos."""
    reference = load_engine(
        settings.model_path,
        settings.backend,
        engine.threads,
        settings.ort_spinning,
        allow_no_metadata=settings.allow_no_metadata,
        cache_dir=settings.openvino_cache_dir,
    )
    photos = [read_image_file(path) for path in deviation.photos_in()]
    measured = deviation.measure(DepthEstimator(engine), DepthEstimator(reference), photos)
    return deviation.worst(measured)


class ModelRuntime:
    """Owns the worker's estimator. ``start()`` loads it on a thread so probes answer meanwhile."""

    def __init__(
        self,
        settings: Settings,
        on_failure: Callable[[str], None] | None = None,
        measure_deviation: Callable[[Settings, Engine], deviation.Deviation] = (
            measure_against_fp32
        ),
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
        """Load the engine, refuse untrained weights unless allowed, warm up.

        A reduced precision is first measured against fp32 on the example photos and refused
        above MIDAS_MAX_DEVIATION.
        """
        with self._lock:
            if self._ready.is_set():
                return
            start = time.perf_counter()
            try:
                settings = self.settings
                engine = load_worker_engine(settings)
                refuse_untrained(settings.model_path, engine.metadata, settings.allow_untrained)
                if engine.precision != "fp32":
                    measured = engine.engines[engine.threads]
                    self.deviation = self.measure_deviation(settings, measured)
                    log.info("%s deviation from fp32: %s", engine.precision, self.deviation)
                    deviation.enforce_bound(
                        self.deviation, settings.max_deviation, engine.precision
                    )
                engine.warm_up(settings.warmup_runs)
                estimator = DepthEstimator(engine)
            except Exception as exc:
                self.error = f"model failed to load: {exc}"
                log.exception("model failed to load")
                self._finished.set()
                if self.on_failure is not None:
                    self.on_failure(self.error)
                return
            self._estimator = estimator
            self.load_seconds = time.perf_counter() - start
            self._ready.set()
            self._finished.set()
            log.info("model ready in %.2f s (%s)", self.load_seconds, engine.backend)

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
            info["untrained"] = bool(engine.metadata.get("untrained"))
            info["load_seconds"] = round(self.load_seconds or 0.0, 3)
        if self.deviation is not None:
            info["deviation_from_fp32"] = self.deviation.as_dict()
        if self.error:
            info["error"] = self.error
        return info
