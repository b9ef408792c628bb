"""The one way to get a model: :func:`load_model` applies the whole policy for every front end.

The web workers (``serving.runtime.ModelRuntime``), the job worker, ``predict`` and ``video``
all call it with their settings, so a model is refused, measured and warmed the same way
everywhere:

1. the engine (``MIDAS_BACKEND``, ``MIDAS_PRECISION``, ``MIDAS_THREADS``), one per thread count
   where ``MIDAS_SHARE_CORES`` splits the cores, with OpenVINO's compiled-model cache
   (``MIDAS_OPENVINO_CACHE_DIR``);
   a file without the export metadata is refused unless ``MIDAS_ALLOW_NO_METADATA=1``;
2. random weights are refused unless ``MIDAS_RANDOM_WEIGHTS=1``;
3. a reduced precision is measured against fp32 on the example photos and refused above
   ``MIDAS_MAX_DEVIATION``;
4. ``MIDAS_WARMUP_RUNS`` inferences (NaN or infinite output refuses the model).

Nothing else calls an engine constructor (``inference.engines.load_engine``) to serve.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from midas_service.config import Settings
from midas_service.errors import NonFiniteDepth
from midas_service.images.decode import read_image_file
from midas_service.inference import core_share, deviation
from midas_service.inference.engines import (
    Engine,
    MissingMetadata,
    ModelFileError,
    available_cpus,
    load_engine,
    refuse_untrained,
)
from midas_service.inference.heap import release_free_heap
from midas_service.inference.pipeline import DepthEstimator, check_finite
from midas_service.inference.precision import PrecisionRefused
from midas_service.inference.preprocess import to_network_input

log = logging.getLogger(__name__)

# Why a model cannot be served: each message says what to do. A command prints it and exits 2.
REFUSALS = (ModelFileError, MissingMetadata, PrecisionRefused, NonFiniteDepth, OSError, ValueError)


# OpenMP keeps one thread team per calling thread: these backends' engines run on one
# dedicated thread. ONNX Runtime and OpenVINO own their thread pools and are called directly
# (one request computes at a time per worker), which saves two thread hand-offs per request.
OWN_THREAD_BACKENDS = ("torchscript",)


class WorkerEngine:
    """The model's inference: one engine per thread count; TorchScript's on one dedicated thread.

    Each inference takes the largest thread count that fits the cores other workers leave free
    at that moment, or waits for the workers' one inference turn, as MIDAS_SHARE_CORES says
    (``midas_service.inference.core_share``). Requests are handled on several
    threads (gthread), and OpenMP (TorchScript) keeps one thread team per calling thread:
    called from each request thread in turn, a worker would grow one team per thread. One
    caller keeps it at MIDAS_THREADS inference threads, and the warm-up warms the very thread
    that serves.
    """

    def __init__(self, engines: dict[int, Engine], cores: int, sharing: str = "off") -> None:
        self.engines = engines
        self.sharing = sharing  # split, turns or off (core_share.policy)
        self.last_turn_wait = 0.0  # seconds the last inference waited for the workers' turn
        self.counts = tuple(sorted(engines, reverse=True))
        self.cores = cores
        first = engines[self.counts[0]]
        self.backend, self.threads, self.metadata = first.backend, first.threads, first.metadata
        self.precision = first.precision
        self.last_threads = self.counts[0]
        self._shapes_seen: set[tuple[int, int, int]] = set()  # (height, width, threads)
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
        if self.sharing != "turns":
            depth = self._run(self.engines[threads], batch)
        else:
            with core_share.inference_turn() as waited:
                self.last_turn_wait = waited
                depth = self._run(self.engines[threads], batch)
        shape = (batch.shape[2], batch.shape[3], threads)
        if shape not in self._shapes_seen:  # once per shape and count (inference/heap.py)
            self._shapes_seen.add(shape)
            release_free_heap()
        return depth

    def _run(self, engine: Engine, batch: np.ndarray) -> np.ndarray:
        if self._thread is None:
            return engine.infer(batch)
        return self._thread.submit(engine.infer, batch).result()

    def warm_up(self, runs: int) -> None:
        """``runs`` inferences with every engine, on the inference thread that will serve
        (each thread count compiles its own oneDNN kernels); NonFiniteDepth if one is broken."""
        batch = to_network_input(np.full((480, 640, 3), 0.5, dtype=np.float32))
        for threads in self.counts:
            for _ in range(runs):
                check_finite(self.infer(batch, threads)[0])


def load_worker_engine(settings: Settings) -> WorkerEngine:
    """The model at MIDAS_THREADS and, where the cores are split (MIDAS_SHARE_CORES), at each
    smaller share. An engine that can run its model at another thread count
    (``with_threads``: TorchScript) is loaded once; the others once per count."""
    cores = available_cpus()
    threads = settings.threads or cores
    sharing = core_share.policy(settings.share_cores, settings.backend)
    counts = core_share.thread_counts(threads) if sharing == "split" else (threads,)

    def load(count: int) -> Engine:
        return load_engine(
            settings.model_path,
            settings.backend,
            count,
            settings.ort_spinning,
            allow_no_metadata=settings.allow_no_metadata,
            precision=settings.precision,
            cache_dir=settings.openvino_cache_dir,
        )

    first = load(counts[0])
    same_model = getattr(first, "with_threads", None)
    engines = {counts[0]: first}
    for count in counts[1:]:
        engines[count] = same_model(count) if same_model is not None else load(count)
    return WorkerEngine(engines, cores, sharing)


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


Measure = Callable[[Settings, Engine], deviation.Deviation]


@dataclass(frozen=True)
class LoadedModel:
    estimator: DepthEstimator[WorkerEngine]
    deviation: deviation.Deviation | None  # from fp32; measured when not fp32

    @property
    def engine(self) -> WorkerEngine:
        return self.estimator.engine


def load_model(settings: Settings, measure: Measure | None = None) -> LoadedModel:
    """The model of ``settings`` with the whole policy (module docstring), or an exception
    that says why it cannot be served. ``measure``: how a reduced precision is compared
    with fp32 (default: :func:`measure_against_fp32`)."""
    engine = load_worker_engine(settings)
    refuse_untrained(settings.model_path, engine.metadata, settings.allow_untrained)
    measured = None
    if engine.precision != "fp32":
        measured = (measure or measure_against_fp32)(settings, engine.engines[engine.threads])
        log.info("%s deviation from fp32: %s", engine.precision, measured)
        deviation.enforce_bound(measured, settings.max_deviation, engine.precision)
    engine.warm_up(settings.warmup_runs)
    if engine.metadata.get("untrained"):
        log.warning("this model has random weights: its depth maps are meaningless")
    return LoadedModel(DepthEstimator(engine), measured)
