"""One engine alone, in its own process, for devtools/bench.py's engine-only figures.

    python -m devtools.engine_loop MODEL BACKEND PRECISION THREADS HEIGHT WIDTH SECONDS

Loads the engine the way a worker does (``load_engine``), warms it up, prints ``ready``, waits
for a line on stdin (so several processes can start together), runs inferences for SECONDS
and prints one JSON line: ``count``, ``seconds`` and the per-inference ``p50_ms``/``min_ms``.
bench.py starts it with the served workers' interpreter and environment (OpenMP preload,
KMP_BLOCKTIME), so model-only and served figures compare like with like.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from midas_service.config import Settings
from midas_service.inference.engines import load_engine


def main() -> None:
    model, backend, precision, threads, height, width, seconds = sys.argv[1:8]
    settings = Settings.from_env()  # the layout's MIDAS_* variables, as the workers get them
    engine = load_engine(
        Path(model),
        backend,
        int(threads),
        settings.ort_spinning,
        allow_no_metadata=True,
        precision=precision,
        cache_dir=settings.openvino_cache_dir,  # the workers' OpenVINO blobs
    )
    batch = np.random.default_rng(0).standard_normal((1, 3, int(height), int(width)))
    batch = batch.astype(np.float32)
    for _ in range(5):
        engine.infer(batch)
    print("ready", flush=True)
    sys.stdin.readline()
    samples = []
    start = time.perf_counter()
    deadline = start + float(seconds)
    while True:
        before = time.perf_counter()
        engine.infer(batch)
        after = time.perf_counter()
        samples.append((after - before) * 1000)
        if after >= deadline:
            break
    result = {
        "count": len(samples),
        "seconds": time.perf_counter() - start,
        "p50_ms": float(np.percentile(samples, 50)),
        "min_ms": float(min(samples)),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
