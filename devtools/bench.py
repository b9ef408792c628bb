"""Benchmark the depth service on this machine and print one table; also writes JSON.

    python -m devtools.bench                    # full run (~10 minutes on 2 cores)
    python -m devtools.bench --quick            # shorter load runs, for a smoke check
    python -m devtools.bench --video            # only the video rows (devtools/video_bench.py)
    python -m devtools.bench --targets-only \
        --layouts torchscript:fp32:2x2,openvino:bf16:2x2,onnxruntime:fp32:2x2,openvino:fp32:2x2
                                                # the target rows only (~5 minutes)

Measures, in one run: model-only latency of each backend and precision (OpenVINO bf16 only on
a CPU with bf16 units; the TorchScript tuning steps too), pre/post-processing cost, end-to-end
latency through Gunicorn and through nginx, throughput at concurrency 1/2/4/8 with wrk, memory
per worker (RSS; PSS and private from /proc/PID/smaps_rollup after warm-up, after the load and
after one request of every input shape the resize rule gives), and time from start to /readyz
200, for several workers x threads layouts. Input: a real photo (scikit-image's chelsea) at
640x480. Video rows: frames/s at 640x480 and 1080p split into decode, infer and encode, the
flicker of each colour scale, and the peak memory of a 100- and a 300-frame 720p clip.

For every served layout it also prints what the service costs on top of its engine: the served
engine's own model-only p50 (same backend, precision, threads, input, interpreter and OpenMP
environment, devtools/engine_loop.py, in rounds between the served c=1 rounds), the overhead
(served c=1 p50 over a new connection minus that) split by stage from Server-Timing, and c=4
throughput against the engine-only throughput of the same number of processes at the thread
count a worker gets under load. A target table (PASS/FAIL) closes the report.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import importlib.metadata
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np
import requests

from devtools.servers import gunicorn, nginx, wait_for, worker_pids
from devtools.support import ROOT, cpu_model, export_model, photo_640x480_jpeg
from midas_service.config import Settings
from midas_service.images import encode, jpeg_bands, visualize
from midas_service.images.decode import decode_image
from midas_service.inference import core_share, openmp
from midas_service.inference.engines import (
    BACKENDS,
    DEFAULT_BACKEND,
    available_cpus,
    load_engine,
)
from midas_service.inference.pipeline import DepthEstimator, upsample
from midas_service.inference.precision import (
    PrecisionRefused,
    check_precision,
    cpu_flags,
)
from midas_service.inference.preprocess import (
    NETWORK_SHAPES,
    network_size,
    to_network_input,
)

log = logging.getLogger("bench")
SIZES = {"256x256": (256, 256), "256x192": (192, 256)}  # label WxH -> (h, w)
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "image/jpeg"
local f = io.open("{path}", "rb")
wrk.body = f:read("*a")
f:close()
"""


def timings(fn: Callable[[], object], runs: int, warmup: int = 5) -> dict[str, float]:
    """p50/p90/min milliseconds of ``fn`` over ``runs`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return {
        "p50_ms": float(np.percentile(samples, 50)),
        "p90_ms": float(np.percentile(samples, 90)),
        "p99_ms": float(np.percentile(samples, 99)),
        "min_ms": float(min(samples)),
    }


# The instruction sets that decide which engine is fast here, printed beside every figure.
SUMMARY_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


def machine_info() -> dict[str, object]:
    import gunicorn as gunicorn_pkg
    import onnxruntime
    import openvino
    import torch

    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "usable_cores": available_cpus(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_build": f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build",
        "onnxruntime": onnxruntime.__version__,
        "openvino": openvino.__version__,
        "bf16_flags": sorted(f for f in cpu_flags() if "bf16" in f),
        "flags": [f for f in SUMMARY_FLAGS if f in cpu_flags()],
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "flask": importlib.metadata.version("flask"),
        "gunicorn": gunicorn_pkg.__version__,
        "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


MODEL_ONLY = (*((b, "fp32") for b in BACKENDS), ("openvino", "bf16"))


def model_only(model: Path, runs: int) -> list[dict[str, object]]:
    """Every backend in fp32 and OpenVINO in bf16 (a row saying why where it cannot run)."""
    rows: list[dict[str, object]] = []
    for backend, precision in MODEL_ONLY:
        try:
            check_precision(backend, precision)
        except PrecisionRefused as exc:
            rows.append({"backend": backend, "precision": precision, "refused": str(exc)})
            log.info("model-only %s %s: not run (%s)", backend, precision, exc)
            continue
        for threads in (1, 2):
            engine = load_engine(model, backend, threads, precision=precision)
            for label, (h, w) in SIZES.items():
                batch = np.random.default_rng(0).standard_normal((1, 3, h, w), dtype=np.float32)
                stats = timings(lambda e=engine, b=batch: e.infer(b), runs)
                rows.append(
                    {
                        "backend": backend,
                        "precision": precision,
                        "threads": threads,
                        "size": label,
                        **stats,
                    }
                )
                log.info(
                    "model-only %s %s %d threads %s: %.1f ms",
                    backend,
                    precision,
                    threads,
                    label,
                    stats["p50_ms"],
                )
    return rows


def torchscript_variants(runs: int) -> list[dict[str, object]]:
    """The TorchScript tuning steps at 256x192, 2 threads (random weights: speed only)."""
    import warnings

    import torch

    from midas_service.export.exporter import unpadded_stride2_convs
    from midas_service.export.network import build_model
    from midas_service.export.packed import packed_model
    from midas_service.export.weights import random_state_dict

    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    model = build_model()
    model.load_state_dict(random_state_dict(0))
    x = torch.randn(1, 3, 192, 256)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    rows = []

    def add(name: str, fn: Callable[[], object]) -> None:
        with torch.inference_mode():
            stats = timings(fn, runs)
        rows.append({"variant": name, **stats})
        log.info("torchscript variant %s: %.1f ms", name, stats["p50_ms"])

    with torch.no_grad():
        add("eager (upstream style)", lambda: model(x))
        frozen = torch.jit.freeze(torch.jit.trace(model, x).eval())
        add("traced + frozen", lambda: frozen(x))
        model_cl = model.to(memory_format=torch.channels_last)
        frozen_cl = torch.jit.freeze(torch.jit.trace(model_cl, x_cl).eval())
        add("traced + frozen, channels-last", lambda: frozen_cl(x))
        served = torch.jit.optimize_for_inference(
            torch.jit.freeze(torch.jit.trace(model_cl, x_cl).eval())
        )
        add("+ optimize_for_inference (not used)", lambda: served(x))
        unpadded_stride2_convs(model_cl)
        unpadded = torch.jit.freeze(torch.jit.trace(model_cl, x_cl).eval())
        add("+ stride-2 layers without padding copies", lambda: unpadded(x_cl))
        packed = torch.jit.trace(packed_model(model_cl, x), x, check_trace=False)
        add("+ packed convolutions with fused post-ops (served)", lambda: packed(x))
    return rows


def processing_costs(model: Path, jpeg: bytes, runs: int) -> dict[str, dict[str, float]]:
    rgb = decode_image(jpeg, 1 << 30, 1 << 30)
    depth = DepthEstimator(load_engine(model, "onnxruntime", 2)).predict(rgb)
    prediction = np.ascontiguousarray(depth[::2, ::2][:192, :256])
    heat = visualize.heatmap(depth)
    return {
        "decode": timings(lambda: decode_image(jpeg, 1 << 30, 1 << 30), runs),
        "preprocess": timings(lambda: to_network_input(rgb), runs),
        "postprocess": timings(lambda: upsample(prediction, 480, 640), runs),
        "heatmap": timings(lambda: visualize.heatmap(depth), runs),
        "encode_jpeg": timings(lambda: encode.encode_picture(heat, "jpeg"), runs),  # every core
        "encode_jpeg_1_band": timings(
            lambda: jpeg_bands.encode(lambda a, b: heat[a:b], 480, 640, encode.JPEG_QUALITY, 1),
            runs,
        ),
    }


def sequential_latency(url: str, jpeg: bytes, runs: int) -> dict[str, float]:
    session = requests.Session()

    def one() -> None:
        response = session.post(
            f"{url}/predict", data=jpeg, headers={"Content-Type": "image/jpeg"}, timeout=30
        )
        response.raise_for_status()

    return timings(one, runs)


def parse_wrk(text: str) -> dict[str, float]:
    """Requests/s, latency percentiles (ms) and error counts from ``wrk --latency`` output."""

    def ms(value: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
        return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]

    result: dict[str, float] = {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "requests": float(re.search(r"(\d+) requests in", text).group(1)),
    }
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s+{pct}%\s+(\S+)", text, flags=re.M)
        result[f"p{pct}_ms"] = ms(match.group(1)) if match else float("nan")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    result["errors"] = float(
        (int(non_2xx.group(1)) if non_2xx else 0)
        + (sum(int(v) for v in sockets.groups()) if sockets else 0)
    )
    return result


def wrk(url: str, body_path: Path, connections: int, seconds: int) -> dict[str, float]:
    script = body_path.with_suffix(".lua")
    script.write_text(WRK_SCRIPT.format(path=body_path))
    output = subprocess.run(
        [
            "wrk",
            "-t",
            str(min(connections, 2)),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"{url}/predict",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return parse_wrk(output)


def smaps_rollup(text: str) -> dict[str, float]:
    """RSS, PSS and private (clean + dirty) MB from a /proc/PID/smaps_rollup text."""
    kb = {name: int(value) for name, value in re.findall(r"^(\w+):\s+(\d+) kB", text, re.M)}
    return {
        "rss_mb": kb["Rss"] / 1024,
        "pss_mb": kb["Pss"] / 1024,
        "private_mb": (kb["Private_Clean"] + kb["Private_Dirty"]) / 1024,
        "private_dirty_mb": kb["Private_Dirty"] / 1024,
    }


def worker_memory(master: subprocess.Popen) -> list[dict[str, float]]:
    """Each worker's memory: PSS shares the pages workers have in common, private is its own."""
    return [
        smaps_rollup(Path(f"/proc/{pid}/smaps_rollup").read_text())
        for pid in sorted(worker_pids(master))
    ]


def every_shape_photos() -> list[bytes]:
    """One JPEG per network input shape the resize rule gives (15: 256 x 32..256, both ways)."""
    from skimage import data

    photo = data.chelsea()
    jpegs = []
    for h, w in NETWORK_SHAPES:
        rgb = cv2.resize(photo, (2 * w, 2 * h), interpolation=cv2.INTER_AREA)
        assert network_size(2 * h, 2 * w) == (h, w)
        ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        jpegs.append(buffer.tobytes())
    return jpegs


def visit_every_shape(url: str, workers: int) -> None:
    """Each worker answers each shape at least once (requests spread over fresh connections)."""
    for jpeg in every_shape_photos():
        for _ in range(2 * workers):
            requests.post(
                f"{url}/predict", data=jpeg, headers={"Content-Type": "image/jpeg"}, timeout=60
            ).raise_for_status()


# TorchScript's OpenMP waiting, for comparison with the default (Intel OpenMP, KMP_BLOCKTIME=1,
# which devtools/servers.py sets like scripts/serve.sh): GNU OpenMP spinning or passive.
OPENMP_OPTIONS = {
    "gomp": {"LD_PRELOAD": "", "OMP_WAIT_POLICY": "ACTIVE"},
    "passive": {"LD_PRELOAD": "", "OMP_WAIT_POLICY": "PASSIVE"},
}


def parse_layout(text: str, default_backend: str) -> tuple[int, int, dict[str, str]]:
    """``WxT`` plus options: ``2x2``, ``2x2+onnxruntime``, ``2x2+spin`` (ORT spinning on),
    ``2x2+gomp`` / ``2x2+passive`` (TorchScript with GNU OpenMP spinning / passive),
    ``2x2+split`` / ``2x2+turns`` / ``2x2+off`` (MIDAS_SHARE_CORES), ``2x2+openvino+bf16``
    (MIDAS_PRECISION=bf16); or ``backend:precision:WxT[+options]``
    (``openvino:bf16:2x2``)."""
    text = text.lower()
    if ":" in text:
        backend, precision, text = text.split(":", 2)
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"unknown precision {precision!r}; fp32 or bf16")
        text = "+".join([text, backend, *(["bf16"] if precision == "bf16" else [])])
    shape, *options = text.split("+")
    workers, threads = (int(v) for v in shape.split("x"))
    env = {"MIDAS_THREADS": str(threads), "MIDAS_BACKEND": default_backend}
    for option in options:
        if option == "spin":
            env["MIDAS_ORT_SPINNING"] = "1"
        elif option in core_share.POLICIES:
            env["MIDAS_SHARE_CORES"] = option
        elif option in BACKENDS:
            env["MIDAS_BACKEND"] = option
        elif option == "bf16":
            env["MIDAS_PRECISION"] = "bf16"
        elif option in OPENMP_OPTIONS:
            env.update(OPENMP_OPTIONS[option])
        else:
            raise ValueError(f"unknown layout option {option!r} in {text!r}")
    return workers, threads, env


def worker_environment(env: dict[str, str]) -> dict[str, str]:
    """What a served worker runs with (devtools/servers.py gives Gunicorn the same)."""
    return {**os.environ, **openmp.recommended_environment(), **env}


@contextmanager
def engine_loops(
    model: Path,
    python: str,
    env: dict[str, str],
    backend: str,
    precision: str,
    threads: int,
    count: int,
    size: tuple[int, int] = SIZES["256x192"],
) -> Iterator[Callable[[float], list[dict[str, Any]]]]:
    """``count`` processes each holding the engine alone (devtools/engine_loop.py), warm; yields
    ``run(seconds)``, which starts them together and returns each one's inference count,
    seconds, p50 and samples. Between runs they idle."""
    command = [
        python,
        "-m",
        "devtools.engine_loop",
        str(model),
        backend,
        precision,
        str(threads),
        *(str(v) for v in size),
    ]
    with ExitStack() as stack:
        processes = [
            stack.enter_context(
                subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env=worker_environment(env),
                    cwd=ROOT,
                )
            )
            for _ in range(count)
        ]
        for process in processes:
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"engine loop failed: {' '.join(command)}")

        def run(seconds: float) -> list[dict[str, Any]]:
            for process in processes:
                process.stdin.write(f"{seconds}\n")
                process.stdin.flush()
            return [json.loads(process.stdout.readline()) for process in processes]

        yield run
        for process in processes:
            process.stdin.close()  # end of input: the loop exits


def model_only_served(
    model: Path, python: str, env: dict[str, str], backend: str, precision: str, threads: int
) -> float:
    """The served engine's model-only p50 (ms) at 256x192, in a process set up like a worker."""
    with engine_loops(model, python, env, backend, precision, threads, 1) as run:
        return float(run(4.0)[0]["p50_ms"])


def engines_under_load(workers: int, threads: int, env: dict[str, str]) -> tuple[int, int]:
    """(inferences at once, threads each) while every worker computes (MIDAS_SHARE_CORES)."""
    sharing = core_share.policy(env.get("MIDAS_SHARE_CORES", "auto"), env["MIDAS_BACKEND"])
    if sharing == "turns":
        return 1, threads
    if workers == 1 or sharing == "off":
        return workers, threads
    counts = core_share.thread_counts(threads)
    return workers, core_share.threads_within_share(counts, available_cpus(), workers)


def parse_server_timing(header: str) -> dict[str, float]:
    """``name;desc=..;dur=1.2, ...`` -> {name: ms} for the entries with a duration."""
    stages = {}
    for entry in header.split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        for param in params:
            if param.startswith("dur="):
                stages[name] = float(param[4:])
    return stages


def served_c1(
    url: str,
    jpeg: bytes,
    runs: int,
    warmup: int = 10,
    rounds: int = 1,
    between_rounds: Callable[[], None] = lambda: None,
) -> dict[str, object]:
    """One request at a time, each on a new connection (http.client: little client cost), in
    ``rounds`` after ``between_rounds()`` each; client p50 and each Server-Timing stage's p50."""
    parts = urlsplit(url)
    samples: list[float] = []
    stages: dict[str, list[float]] = defaultdict(list)
    round_starts = {warmup + runs * k // rounds for k in range(rounds)}
    for i in range(warmup + runs):
        if i in round_starts:
            between_rounds()
        start = time.perf_counter()
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        connection.request("POST", "/predict", body=jpeg, headers={"Content-Type": "image/jpeg"})
        response = connection.getresponse()
        response.read()
        connection.close()
        elapsed = (time.perf_counter() - start) * 1000
        if response.status != 200:
            raise RuntimeError(f"/predict answered {response.status}")
        if i < warmup:
            continue
        samples.append(elapsed)
        timing = parse_server_timing(response.getheader("Server-Timing", ""))
        for name, ms in timing.items():
            stages[name].append(ms)
        # "turn" is the part of "infer" spent waiting for another worker's inference.
        named = sum(ms for name, ms in timing.items() if name not in ("total", "cache", "turn"))
        stages["server other"].append(timing.get("total", 0.0) - named)
        stages["HTTP and client"].append(elapsed - timing.get("total", 0.0))
    return {
        "p50_ms": float(np.percentile(samples, 50)),
        "p99_ms": float(np.percentile(samples, 99)),
        "stages_p50_ms": {name: float(np.percentile(v, 50)) for name, v in stages.items()},
    }


C1_ROUNDS = 20  # served c=1 requests in this many rounds, the engines alone before each
MODEL_ONLY_ROUND_S = 0.5  # this machine flips between speeds ~40 % apart every few seconds

# A layout is the default path when it sets nothing but these (what scripts/serve.sh leaves).
DEFAULT_ENV = {"MIDAS_THREADS", "MIDAS_BACKEND", "MIDAS_CACHE_MB", "MIDAS_QUEUE_TIMEOUT_S"}


def measure_layout(
    model: Path, workdir: Path, jpeg_path: Path, layout: str, args: argparse.Namespace
) -> dict[str, object]:
    jpeg = jpeg_path.read_bytes()
    workers, threads, env = parse_layout(layout, args.backend)
    # The same photo again and again: without this the result cache would answer, not the model.
    # The production queue timeout, not the lenient one devtools/servers.py gives a busy CI machine.
    env.update(MIDAS_CACHE_MB="0", MIDAS_QUEUE_TIMEOUT_S=str(Settings.queue_timeout_s))
    row: dict[str, object] = {
        "layout": layout,
        "workers": workers,
        "threads": threads,
        "backend": env["MIDAS_BACKEND"],
        "precision": env.get("MIDAS_PRECISION", "fp32"),
        # What scripts/serve.sh starts: TorchScript fp32, cores shared, Intel OpenMP.
        "default_path": env["MIDAS_BACKEND"] == DEFAULT_BACKEND and set(env) <= DEFAULT_ENV,
    }
    try:
        check_precision(row["backend"], row["precision"])
    except PrecisionRefused as exc:
        log.info("layout %s: not run (%s)", layout, exc)
        return {**row, "refused": str(exc)}
    if env["MIDAS_BACKEND"] == "torchscript":
        row["openmp"] = next((o for o in OPENMP_OPTIONS if o in layout), "intel")
    engine = (model, args.server_python, env, row["backend"], row["precision"])
    row["engines_under_load"], row["threads_under_load"] = engines_under_load(workers, threads, env)
    with engine_loops(*engine, row["threads_under_load"], row["engines_under_load"]) as run:
        loops = run(args.duration)
    row["engine_only_per_s"] = sum(r["count"] / r["seconds"] for r in loops)
    log.info(
        "%s: %d engines x %d threads alone: %.1f inferences/s",
        layout,
        row["engines_under_load"],
        row["threads_under_load"],
        row["engine_only_per_s"],
    )
    with ExitStack() as stack:
        # The engine alone and the targets' yardstick (ONNX Runtime fp32 on every core), each in
        # a process set up like a worker, run in rounds between the served c=1 rounds (each idle
        # while the others run), so a drift of this machine's speed (20 % within minutes on a
        # shared one) moves all three alike and passes neither for overhead nor for a ratio.
        model_alone = stack.enter_context(ExitStack())
        run_alone = model_alone.enter_context(engine_loops(*engine, threads, 1))
        run_ort = model_alone.enter_context(
            engine_loops(model, args.server_python, {}, "onnxruntime", "fp32", available_cpus(), 1)
        )
        alone_ms: list[float] = []
        ort_ms: list[float] = []

        def engines_alone_round() -> None:
            alone_ms.extend(run_alone(MODEL_ONLY_ROUND_S)[0]["samples_ms"])
            ort_ms.extend(run_ort(MODEL_ONLY_ROUND_S)[0]["samples_ms"])

        start = time.monotonic()
        url, process = stack.enter_context(
            gunicorn(model, workdir, workers=workers, wait=False, python=args.server_python, **env)
        )
        wait_for(f"{url}/readyz", process)
        # Every worker warm: ask until each pid has answered ready.
        pids: set[int] = set()
        while len(pids) < workers:
            pids.add(requests.get(f"{url}/readyz", timeout=5).json()["pid"])
        row["start_to_ready_s"] = round(time.monotonic() - start, 2)
        row["memory_after_warmup"] = worker_memory(process)
        row["rss_after_warmup_mb"] = [m["rss_mb"] for m in row["memory_after_warmup"]]
        row["gunicorn_c1"] = served_c1(
            url,
            jpeg,
            args.requests,
            rounds=C1_ROUNDS,
            between_rounds=engines_alone_round,
        )
        model_alone.close()
        row["model_only_p50_ms"] = float(np.percentile(alone_ms, 50))
        row["ort_model_only_p50_ms"] = float(np.percentile(ort_ms, 50))
        row["model_only_inferences"] = len(alone_ms)
        row["overhead_ms"] = row["gunicorn_c1"]["p50_ms"] - row["model_only_p50_ms"]
        log.info(
            "%s c=1 (new connection each): p50 %.1f ms, model only %.1f ms, overhead %.1f ms",
            layout,
            row["gunicorn_c1"]["p50_ms"],
            row["model_only_p50_ms"],
            row["overhead_ms"],
        )
        served = args.requests
        row["wrk"] = {}
        for connections in args.concurrency:
            result = wrk(url, jpeg_path, connections, args.duration)
            row["wrk"][connections] = result
            served += int(result["requests"])
            log.info(
                "%s c=%d: %.1f req/s p50 %.1f ms p99 %.1f ms errors %d",
                layout,
                connections,
                result["requests_per_s"],
                result["p50_ms"],
                result["p99_ms"],
                result["errors"],
            )
        while served < args.min_requests:
            served += int(wrk(url, jpeg_path, 4, 2)["requests"])
        row["requests_served"] = served
        row["memory_after_requests"] = worker_memory(process)
        row["rss_after_requests_mb"] = [m["rss_mb"] for m in row["memory_after_requests"]]
        visit_every_shape(url, workers)
        row["memory_after_every_shape"] = worker_memory(process)
        if args.with_nginx:
            proxy = stack.enter_context(nginx(url, workdir))
            row["nginx_c1"] = sequential_latency(proxy, jpeg, args.requests)
            row["nginx_wrk_c4"] = wrk(proxy, jpeg_path, 4, args.duration)
    return row


def server_torch(python: str) -> str:
    """The torch version (and build) the served rows run on."""
    code = "import torch; print(torch.__version__, torch.version.cuda or 'cpu')"
    version, cuda = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return f"{version} ({'CPU build' if cuda == 'cpu' else f'CUDA {cuda} build'})"


def ensure_model(path: Path | None, workdir: Path) -> Path:
    if path is not None:
        return path
    log.info("exporting a random-weights model for timing (speed does not depend on weights)")
    return export_model(workdir / "bench-model.pt", "--random-weights", quiet=True)


def print_report(report: dict[str, object]) -> None:
    info = report["machine"]
    print(f"\n# MiDaS small service benchmark, {info['date']}")
    print(
        f"{info['cpu']}, {info['usable_cores']} usable cores; flags: "
        f"{' '.join(info['flags']) or 'none of ' + ' '.join(SUMMARY_FLAGS)}; torch "
        f"{info['torch']} ({info['torch_build']}), onnxruntime {info['onnxruntime']}, openvino "
        f"{info['openvino']}, opencv {info['opencv']}; served rows on torch "
        f"{info.get('server_torch', info['torch'])}; load average at start "
        f"{info.get('load_average', '?')}\n"
    )
    if report["model_only"]:
        print_model_only(report)
    if report.get("torchscript_variants"):
        print("\n## TorchScript tuning, 256x192, 2 threads (ms)\n")
        print("| variant | p50 | min |\n|---|---|---|")
        for r in report["torchscript_variants"]:
            print(f"| {r['variant']} | {r['p50_ms']:.1f} | {r['min_ms']:.1f} |")
    if report.get("processing"):
        print("\n## Pre/post-processing, 640x480 JPEG (ms, p50)\n")
        print(" | ".join(f"{k} {v['p50_ms']:.2f}" for k, v in report["processing"].items()))
    served_rows = [r for r in report["layouts"] if "refused" not in r]
    for r in report["layouts"]:
        if "refused" in r:
            print(f"\n{r['layout']} ({r['backend']} {r['precision']}): not run: {r['refused']}")
    print_overhead(served_rows, report["ort_reference_p50_ms"])
    print_served(served_rows)
    print("\n## Memory per worker, MB (PSS / private, from /proc/PID/smaps_rollup)\n")
    print("| layout | after warm-up | after the load | after every input shape |")
    print("|---|---|---|---|")
    for r in served_rows:
        cells = [
            ", ".join(f"{m['pss_mb']:.0f} / {m['private_mb']:.0f}" for m in r[key])
            for key in ("memory_after_warmup", "memory_after_requests", "memory_after_every_shape")
        ]
        print(f"| {r['layout']} ({r['backend']} {r['precision']}) | " + " | ".join(cells) + " |")
    print(
        f"\n## Targets (ratios to ORT fp32 model-only, 256x192, "
        f"{report['ort_reference_threads']} threads, measured in the rounds of each layout's "
        f"c=1 run; before the layouts: {report['ort_reference_p50_ms']:.1f} ms)\n"
    )
    print("| target | layout | measured | result |\n|---|---|---|---|")
    for t in report["targets"]:
        result = "PASS" if t["pass"] else "FAIL"
        if t["pass"] is None:
            result = "info"
        print(f"| {t['target']} | {t['layout']} | {t['value']} | {result} |")


def print_model_only(report: dict[str, object]) -> None:
    print("## Model only, this process (ms; ratios to the same input and threads)\n")
    print(
        "| backend | precision | threads | input | p50 | p90 | min | x ORT fp32 | x OV bf16 |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    for r in report["model_only"]:
        if "refused" in r:
            print(f"| {r['backend']} | {r['precision']} | not run: {r['refused']} |")
            continue
        same = [x for x in report["model_only"] if x.get("size") == r["size"]]
        base = {(x["backend"], x["precision"], x["threads"]): x["p50_ms"] for x in same}
        vs_ort = base.get(("onnxruntime", "fp32", r["threads"]))
        vs_ov = base.get(("openvino", "bf16", r["threads"]))
        print(
            f"| {r['backend']} | {r['precision']} | {r['threads']} | {r['size']} | "
            f"{r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['min_ms']:.1f} | "
            f"{r['p50_ms'] / vs_ort:.2f} | " + (f"{r['p50_ms'] / vs_ov:.2f} |" if vs_ov else "- |")
        )


def print_overhead(rows: list[dict[str, object]], ort: float) -> None:
    """Served c=1 against the served engine alone, and where the difference goes."""
    print("\n## The service's own cost (640x480 JPEG -> heatmap JPEG, 256x192 network input)\n")
    print(
        "Model only: the served engine alone (devtools/engine_loop.py, same backend, precision, "
        f"threads, interpreter and OpenMP environment as the workers), p50 of {C1_ROUNDS} "
        f"rounds of {MODEL_ONLY_ROUND_S:g} s, one before each 1/{C1_ROUNDS} of the served c=1 "
        "requests; ORT fp32 model (the ratio "
        "targets' yardstick, on every core) in the same rounds. Served c=1: a new "
        "connection per request. Stages: p50 of Server-Timing; infer + is the in-worker infer "
        "over model only; server other: Flask, admission, headers; HTTP and client: the rest.\n"
    )
    print(
        "| layout | model only | ORT fp32 model | served c=1 p50 | overhead | x ORT fp32 model "
        "| decode | preprocess | infer + | postprocess | encode | queue | server other "
        "| HTTP and client |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        st = r["gunicorn_c1"]["stages_p50_ms"]
        c1 = r["gunicorn_c1"]["p50_ms"]
        cells = [st.get(k, float("nan")) for k in ("decode", "preprocess", "infer", "postprocess")]
        cells[2] -= r["model_only_p50_ms"]
        cells += [st.get(k, float("nan")) for k in ("encode", "queue")]
        cells += [st["server other"], st["HTTP and client"]]
        print(
            f"| {r['layout']} | {r['model_only_p50_ms']:.1f} | {yardstick(r, ort):.1f} | {c1:.1f} "
            f"| {r['overhead_ms']:.1f} "
            f"| {c1 / yardstick(r, ort):.2f} | " + " | ".join(f"{v:.2f}" for v in cells) + " |"
        )
    print(
        "\n| layout | engines alone (processes x threads each) | engine-only /s | c=4 req/s "
        "| c=4 / engine-only | c=4 x 1/ORT |\n|---|---|---|---|---|---|"
    )
    for r in rows:
        c4 = r["wrk"].get(4, {}).get("requests_per_s", float("nan"))
        print(
            f"| {r['layout']} | {r['engines_under_load']} x {r['threads_under_load']} | "
            f"{r['engine_only_per_s']:.1f} | {c4:.1f} | {c4 / r['engine_only_per_s']:.2f} | "
            f"{c4 * yardstick(r, ort) / 1000:.2f} |"
        )


def print_served(rows: list[dict[str, object]]) -> None:
    print("\n## Service layouts, wrk (640x480 JPEG -> heatmap JPEG)\n")
    levels = sorted({c for r in rows for c in r["wrk"]})
    print(
        "| layout | ready s | c=1 p50 | c=1 p99 | "
        + " | ".join(f"req/s c={c}" for c in levels)
        + " | p99 c=4 | errors | RSS MB (warm -> after N req) |"
    )
    print("|---|---|---|---|" + "---|" * len(levels) + "---|---|---|")
    for r in rows:
        w = r["wrk"]
        errors = sum(int(w[c]["errors"]) for c in w)
        rss = "/".join(
            f"{a:.0f}->{b:.0f}"
            for a, b in zip(r["rss_after_warmup_mb"], r["rss_after_requests_mb"], strict=False)
        )
        rates = " | ".join(f"{w[c]['requests_per_s']:.1f}" if c in w else "-" for c in levels)
        p99 = f"{w[4]['p99_ms']:.1f}" if 4 in w else "-"
        print(
            f"| {r['layout']} ({r['backend']} {r['precision']}) | {r['start_to_ready_s']} | "
            f"{r['gunicorn_c1']['p50_ms']:.1f} | {r['gunicorn_c1']['p99_ms']:.1f} | {rates} | "
            f"{p99} | {errors} | {rss} (N={r['requests_served']}) |"
        )
        if "nginx_c1" in r:
            print(
                f"|   via nginx | | {r['nginx_c1']['p50_ms']:.1f} | {r['nginx_c1']['p99_ms']:.1f}"
                f" | c=4: {r['nginx_wrk_c4']['requests_per_s']:.1f} req/s, p99 "
                f"{r['nginx_wrk_c4']['p99_ms']:.1f} ms, errors "
                f"{int(r['nginx_wrk_c4']['errors'])} |"
            )


OVERHEAD_MS = 4.0
PSS_MB = 600.0


def yardstick(row: dict[str, object], reference: float) -> float:
    """ONNX Runtime fp32 model-only p50 (ms) for a layout's ratios: measured in the rounds of
    its own c=1 run where it was, else the run's reference measured before the layouts."""
    return float(row.get("ort_model_only_p50_ms", reference))


def targets(report: dict[str, object]) -> list[dict[str, object]]:
    """The issue's targets, each PASS/FAIL on this run's figures (``pass`` None: for reading).
    Ratios carry three decimals: 0.8994x printed as 0.90x read as a pass beside its FAIL."""
    rows: list[dict[str, object]] = []

    def add(target: str, layout: str, value: str, ok: bool | None) -> None:
        rows.append({"target": target, "layout": layout, "value": value, "pass": ok})

    for r in report["layouts"]:
        if "refused" in r:
            continue
        name = r["layout"]
        c1 = r["gunicorn_c1"]["p50_ms"]
        ort = yardstick(r, report["ort_reference_p50_ms"])
        add(
            f"overhead at c=1 <= {OVERHEAD_MS:g} ms",
            name,
            f"{r['overhead_ms']:.1f} ms ({c1:.1f} served - {r['model_only_p50_ms']:.1f} model)",
            r["overhead_ms"] <= OVERHEAD_MS,
        )
        c4 = r["wrk"].get(4)
        if c4:
            ratio = c4["requests_per_s"] / r["engine_only_per_s"]
            add(
                "c=4 >= 0.8x the same workers' engine-only throughput",
                name,
                f"{c4['requests_per_s']:.1f} req/s = {ratio:.3f}x of {r['engine_only_per_s']:.1f}"
                f"/s ({r['engines_under_load']} x {r['threads_under_load']} threads)",
                ratio >= 0.8,
            )
        c8 = r["wrk"].get(8)
        if c8:
            add("0 errors at c=8", name, str(int(c8["errors"])), c8["errors"] == 0)
        bounds = []
        if r["precision"] == "bf16":
            bounds = [(0.6, 2.5)]
        elif r["default_path"]:
            bounds = [(1.3, 0.9)]
        for latency, rate in bounds:
            add(
                f"{r['precision']} c=1 <= {latency}x ORT fp32 model-only",
                name,
                f"{c1:.1f} ms = {c1 / ort:.3f}x of {ort:.1f}",
                c1 / ort <= latency,
            )
            if c4:
                times = c4["requests_per_s"] * ort / 1000
                add(
                    f"{r['precision']} c=4 >= {rate}x of 1/ORT fp32 model-only",
                    name,
                    f"{c4['requests_per_s']:.1f} req/s = {times:.3f}x of {1000 / ort:.1f}/s",
                    times >= rate,
                )
        pss = max(m["pss_mb"] for m in r["memory_after_every_shape"])
        add(
            f"PSS per worker after every input shape <= {PSS_MB:g} MB (default path)",
            name,
            f"{pss:.0f} MB (torch {report['machine']['server_torch']})",
            pss <= PSS_MB if r["default_path"] else None,
        )
    return rows


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, help="exported .pt (default: export random weights)")
    parser.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS)
    parser.add_argument(
        "--layouts",
        default="2x2,2x2+onnxruntime,2x2+openvino,2x2+openvino+bf16,2x2+off,2x2+openvino+split,1x2,2x1,"
        "2x2+passive,2x2+gomp",
        help="workers x threads to compare; +onnxruntime/+openvino/+torchscript: that backend; "
        "+bf16: MIDAS_PRECISION=bf16 (not run without bf16 units); "
        "+spin: ORT spinning on; +gomp/+passive: TorchScript on GNU OpenMP (spinning/passive); "
        "+split/+turns/+off: MIDAS_SHARE_CORES",
    )
    parser.add_argument(
        "--targets-only",
        action="store_true",
        help="only what the targets need: no model-only table of every backend, TorchScript "
        "variants, processing table, nginx, video or c=2, no top-up to 1,000 requests",
    )
    parser.add_argument(
        "--server-python",
        default=sys.executable,
        help="interpreter that runs Gunicorn (e.g. a venv of the serving image's "
        "requirements, to measure its torch build's memory); default: this one",
    )
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--requests", type=int, default=200, help="sequential requests at c=1")
    parser.add_argument("--runs", type=int, default=100, help="model-only repetitions")
    parser.add_argument("--quick", action="store_true", help="short runs (smoke check)")
    parser.add_argument("--no-torch-variants", action="store_true")
    parser.add_argument("--output", type=Path, default=ROOT / "bench-results")
    parser.add_argument("--video", action="store_true", help="only the video rows")
    parser.add_argument("--no-video", action="store_true", help="skip the video rows")
    parser.add_argument("--video-frames", type=int, default=60, help="frames per speed clip")
    args = parser.parse_args()
    global video_bench
    from devtools import video_bench  # the video rows live in their own module

    if args.video:
        return video_only(args)
    args.with_nginx = not args.targets_only
    args.concurrency = (4, 8) if args.targets_only else (1, 2, 4, 8)
    args.min_requests = 0 if args.targets_only else 1000
    if args.targets_only:
        args.no_torch_variants = args.no_video = True
    if args.quick:
        args.duration, args.requests, args.runs = 2, 20, 10
    if shutil.which("wrk") is None:
        log.error("wrk is not installed (apt-get install wrk)")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model = ensure_model(args.model, workdir)
        jpeg = photo_640x480_jpeg()
        jpeg_path = workdir / "photo-640x480.jpg"
        jpeg_path.write_bytes(jpeg)
        report: dict[str, object] = {"machine": machine_info()}
        report["machine"]["server_torch"] = server_torch(args.server_python)
        report["model_only"] = [] if args.targets_only else model_only(model, args.runs)
        report["torchscript_variants"] = (
            [] if args.no_torch_variants else torchscript_variants(args.runs)
        )
        if not args.targets_only:
            report["processing"] = processing_costs(model, jpeg, args.runs)
        # The targets' yardstick, in a process set up like the workers.
        report["ort_reference_threads"] = available_cpus()
        report["ort_reference_p50_ms"] = model_only_served(
            model, args.server_python, {}, "onnxruntime", "fp32", available_cpus()
        )
        report["layouts"] = []
        for layout in args.layouts.split(","):
            layout_dir = workdir / layout.replace(":", "-")
            layout_dir.mkdir()
            report["layouts"].append(measure_layout(model, layout_dir, jpeg_path, layout, args))
        report["targets"] = targets(report)
        if not args.no_video:
            report["video"] = video_bench.run(
                model, args.backend, workdir / "video", args.video_frames
            )
    args.output.mkdir(parents=True, exist_ok=True)
    out = args.output / f"bench-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(report, indent=2))
    print_report(report)
    if "video" in report:
        video_bench.print_rows(report["video"])
    print(f"\nJSON: {out}")
    return 0


def video_only(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model = ensure_model(args.model, workdir)
        report = {
            "machine": machine_info(),
            "video": video_bench.run(model, args.backend, workdir / "video", args.video_frames),
        }
    args.output.mkdir(parents=True, exist_ok=True)
    out = args.output / f"bench-video-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(report, indent=2))
    info = report["machine"]
    print(
        f"\n# MiDaS small video benchmark, {info['date']}\n{info['cpu']}, "
        f"{info['usable_cores']} usable cores"
    )
    video_bench.print_rows(report["video"])
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
