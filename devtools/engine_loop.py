"""One engine alone, in its own process, for devtools/bench.py's engine-only figures.

    python -m devtools.engine_loop MODEL BACKEND PRECISION THREADS HEIGHT WIDTH

Loads the engine the way a worker does (``load_engine``), warms it up and prints ``ready``. Then
for each line on stdin, a number of seconds, it runs inferences that long and prints one JSON
line: ``count``, ``seconds``, the per-inference ``p50_ms``/``min_ms`` and every ``samples_ms``;
so several processes can start together, and one can run in rounds between other
measurements. It exits at the end of stdin.
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
from midas_service.inference.engines import Engine, load_engine


def main() -> None:
    model, backend, precision, threads, height, width = sys.argv[1:7]
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
    for line in sys.stdin:
        print(json.dumps(run_inferences(engine, batch, float(line))), flush=True)


def run_inferences(engine: Engine, batch: np.ndarray, seconds: float) -> dict[str, object]:
    """Back-to-back inferences for ``seconds`` (at least one)."""
    samples = []
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        before = time.perf_counter()
        engine.infer(batch)
        after = time.perf_counter()
        samples.append((after - before) * 1000)
        if after >= deadline:
            break
    return {
        "count": len(samples),
        "seconds": time.perf_counter() - start,
        "p50_ms": float(np.percentile(samples, 50)),
        "min_ms": float(min(samples)),
        "samples_ms": samples,
    }


if __name__ == "__main__":
    main()
