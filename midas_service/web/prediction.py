"""The /predict path, shared by the API and the upload page: the one answer path of
``midas_service.answer``, plus what serving adds (readiness wait, result cache, admission,
timings and metrics)."""

from __future__ import annotations

import time
from dataclasses import asdict

from flask import current_app, g

from midas_service import answer as answers
from midas_service.answer import Answer
from midas_service.images.outputs import FORMATS, RenderOptions
from midas_service.serving.runtime import ModelRuntime
from midas_service.web import metrics, overload
from midas_service.web.cache import CacheUnavailable, Entry, Store, engine_identity, result_key


def runtime() -> ModelRuntime:
    return current_app.extensions["midas_runtime"]


def run_prediction(options: RenderOptions, data: bytes) -> Answer:
    """The shared path of ``midas_service.answer``, plus the cache and admission."""
    settings = current_app.config["MIDAS_SETTINGS"]
    # Refuse from the header alone, before waiting for the model or decoding a pixel.
    header = answers.check(
        data, options, answers.InputLimits(settings.max_upload_bytes, settings.max_pixels)
    )
    # A request that reaches a worker still warming up waits for it rather than failing.
    runtime().wait(settings.ready_wait_s)
    estimator = runtime().estimator  # 503 if still not ready
    store: Store | None = current_app.extensions["midas_cache"]
    key = None
    if store is not None:  # off (MIDAS_CACHE_MB=0): no key, no hash of the upload
        engine = estimator.engine
        precision = str(getattr(engine, "precision", "fp32"))
        key = result_key(
            data, engine_identity(engine.backend, precision, engine.metadata), asdict(options)
        )
        cached = cache_get(store, key)
        if cached is not None:
            fmt = FORMATS[options.format]
            return Answer(cached.body, cached.media_type, fmt.suffix, fmt.download)
    overload.take_turn()  # 503 at once if this worker cannot start it soon
    timings = answers.Timings()
    answer = answers.compute(data, header, options, estimator, timings)
    g.stage_seconds = g.get("stage_seconds", {}) | timings.stages
    for stage, seconds in g.stage_seconds.items():
        metrics.STAGE_SECONDS.labels(stage).observe(seconds)
    threads = estimator.engine.last_threads  # the worker's engine (runtime.WorkerEngine)
    metrics.INFERENCE_THREADS.labels(str(threads)).inc()
    notes = [f"threads;desc={threads}"]
    if estimator.engine.sharing == "turns":  # included in infer: the wait for other workers
        notes.append(f"turn;desc=wait;dur={estimator.engine.last_turn_wait * 1000:.2f}")
    g.timing_notes = [*g.get("timing_notes", []), *notes]
    if store is not None and key is not None:
        cache_put(store, key, Entry(answer.body, answer.media_type))
    return answer


def cache_get(store: Store, key: str) -> Entry | None:
    """The cached answer, if any; notes hit/miss/error in metrics and Server-Timing."""
    start = time.perf_counter()
    try:
        entry = store.get(key)
        result = "miss" if entry is None else "hit"
    except CacheUnavailable:
        entry, result = None, "error"
    metrics.CACHE.labels(result).inc()
    g.cache_result = result
    g.timing_notes = [f"cache;desc={result};dur={(time.perf_counter() - start) * 1000:.2f}"]
    return entry


def cache_put(store: Store, key: str, entry: Entry) -> None:
    if g.get("cache_result") == "error":
        return  # off, or unreachable a moment ago: do not pay a second timeout
    try:
        store.put(key, entry)
    except CacheUnavailable:
        metrics.CACHE.labels("error").inc()
