"""Model-only time of the TorchScript engine at every network input shape and thread count,
with and without the per-shape weight layouts (midas_service/inference/packed_layouts.py).

Run it with the serving install's Python, on an otherwise idle machine:

    python -m devtools.layouts_bench --model models/midas_small.pt

The two ways alternate run by run (this project's machines change speed every few seconds),
and each row gives both medians and the median of the paired differences (with minus without).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

import numpy as np

from devtools.support import cpu_model
from midas_service.inference.engines import available_cpus
from midas_service.inference.engines.torchscript import TorchScriptEngine
from midas_service.inference.preprocess import NETWORK_SHAPES

log = logging.getLogger("bench.layouts")


def paired_times(
    engine: TorchScriptEngine, shape: tuple[int, int], runs: int
) -> dict[str, list[float]]:
    """Milliseconds per inference without (``off``) and with (``on``) the layouts, alternating;
    the first run of each way (which finds the shape's layouts) is left out."""
    batch = np.random.default_rng(0).random((1, 3, *shape), np.float32)
    times: dict[str, list[float]] = {"off": [], "on": []}
    for index in range(2 * (runs + 1)):
        way = ("off", "on")[index % 2]
        engine.layouts.enabled = way == "on"
        start = time.perf_counter()
        engine.infer(batch)
        if index >= 2:
            times[way].append((time.perf_counter() - start) * 1000)
    engine.layouts.enabled = True
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a TorchScript export (.pt)")
    parser.add_argument("--runs", type=int, default=8, help="runs of each way per row")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch

    cores = available_cpus()
    engine = TorchScriptEngine(args.model, cores)
    engines = {cores: engine} | {1: engine.with_threads(1)}
    log.info("%s; torch %s; %d usable cores", cpu_model(), torch.__version__, cores)
    log.info("| input | threads | without (ms) | with (ms) | paired difference (ms) |")
    log.info("|---|---|---|---|---|")
    for threads, each in engines.items():
        for shape in NETWORK_SHAPES:
            times = paired_times(each, shape, args.runs)
            difference = statistics.median(
                on - off for off, on in zip(times["off"], times["on"], strict=True)
            )
            log.info(
                "| %dx%d | %d | %.1f | %.1f | %+.1f |",
                *shape,
                threads,
                statistics.median(times["off"]),
                statistics.median(times["on"]),
                difference,
            )
    log.info("extra memory for the layouts: %.1f MB", engine.layouts.extra_bytes / 1e6)


if __name__ == "__main__":
    main()
