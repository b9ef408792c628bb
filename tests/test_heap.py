"""Freed heap pages go back to the system once per new input shape and thread count."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from midas_service import loading
from midas_service.inference.engines import load_engine
from midas_service.inference.heap import release_free_heap


def private_mb() -> float:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Private_Dirty:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no Private_Dirty in smaps_rollup")


def test_release_gives_freed_heap_pages_back():
    # 100 KB blocks stay on the heap (glibc maps only larger ones on their own); freeing all
    # but the last leaves 200 MB free inside the heap, which the allocator keeps.
    blocks = [bytearray(100_000) for _ in range(2000)]
    last = blocks.pop()
    del blocks
    before = private_mb()
    release_free_heap()
    assert before - private_mb() > 100
    assert len(last) == 100_000


def test_the_worker_engine_releases_once_per_new_shape_and_thread_count(model_path, monkeypatch):
    releases = []
    monkeypatch.setattr(loading, "release_free_heap", lambda: releases.append(1))
    engines = {count: load_engine(model_path, "onnxruntime", threads=count) for count in (2, 1)}
    engine = loading.WorkerEngine(engines, cores=2, sharing="split")
    landscape = np.zeros((1, 3, 192, 256), np.float32)
    wide = np.zeros((1, 3, 128, 256), np.float32)
    for batch, threads in [(landscape, 2), (landscape, 2), (wide, 2), (landscape, 1), (wide, 2)]:
        engine.infer(batch, threads)
    assert len(releases) == 3
