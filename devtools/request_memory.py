"""Peak memory of one request: how much one /predict answer adds to a worker's RSS.

Each case runs in a fresh subprocess (a clean peak): load the engine, warm it up, note the
RSS, then answer one request of the given size through ``midas_service.answer`` (the path
/predict takes) and report the peak RSS (``ru_maxrss``) minus the RSS before it.

    python -m devtools.request_memory --model models/midas_small.pt [--pixels 24000000]

The photo is a smooth synthetic JPEG (it must fit the upload limit); the pixels, not the
content, decide the memory.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
from pathlib import Path

CASES = (("side", "png"), ("heatmap", "jpeg"), ("depth", "npy"))


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def measure(model: str, backend: str, pixels: int, output: str, fmt: str) -> dict[str, object]:
    """In this process: RSS before one answer and its peak during it, in MB."""
    import cv2
    import numpy as np

    from midas_service import answer
    from midas_service.images.outputs import RenderOptions
    from midas_service.inference.engines import load_engine
    from midas_service.inference.pipeline import DepthEstimator

    side = math.isqrt(pixels)
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    across = np.broadcast_to(ramp, (side, side))
    picture = np.dstack([np.add.outer(ramp, ramp) / 2, across, across.T])
    _, jpeg = cv2.imencode(".jpg", picture.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 70])
    data = jpeg.tobytes()
    del picture, jpeg
    estimator = DepthEstimator(load_engine(Path(model), backend, allow_no_metadata=True))
    estimator.predict(np.full((480, 640, 3), 0.5, np.float32))
    before = rss_mb()
    limits = answer.InputLimits(max_bytes=len(data), max_pixels=pixels)
    body = answer.answer(data, RenderOptions(output, fmt, "inferno"), estimator, limits).body
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "backend": backend,
        "pixels": side * side,
        "output": output,
        "format": fmt,
        "upload_mb": round(len(data) / 2**20, 1),
        "answer_mb": round(len(body) / 2**20, 1),
        "rss_before_mb": round(before),
        "request_peak_mb": round(peak - before),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--pixels", type=int, default=24_000_000)
    parser.add_argument("--backends", default="torchscript,onnxruntime")
    parser.add_argument("--one", nargs=3, metavar=("BACKEND", "OUTPUT", "FORMAT"))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.model, *args.one[:1], args.pixels, *args.one[1:])))
        return 0
    for backend in args.backends.split(","):
        for output, fmt in CASES:
            one = ["--one", backend, output, fmt]
            command = [sys.executable, __file__, "--model", args.model, "--pixels"]
            result = subprocess.run(
                [*command, str(args.pixels), *one], capture_output=True, text=True, check=True
            )
            print(result.stdout.strip(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
