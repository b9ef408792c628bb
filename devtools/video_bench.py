"""The video rows of devtools/bench.py: frames/s split into decode, infer and encode; the
flicker of each colour scale; the peak memory of a short and a long clip.

Clips are made on the spot (devtools/video_clips.py): a textured background with a square
sliding in, H.264 at 30000/1001 fps with AAC sound.
"""

from __future__ import annotations

import itertools
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np

from devtools.support import ROOT
from devtools.video_clips import flicker_per_scale, make_clip
from midas_service.config import VideoLimits
from midas_service.inference.engines import load_engine
from midas_service.inference.pipeline import DepthEstimator
from midas_service.video.convert import VideoOptions, convert_video

log = logging.getLogger("bench.video")
SPEED_SIZES = {"640x480": (640, 480), "1920x1080": (1920, 1080)}

MEMORY_SCRIPT = """
import resource, sys
from pathlib import Path
from midas_service.inference.engines import load_engine
from midas_service.inference.pipeline import DepthEstimator
from midas_service.video.convert import VideoOptions, convert_video
from midas_service.config import VideoLimits

estimator = DepthEstimator(load_engine(Path(sys.argv[4]), sys.argv[5], 2))
report = convert_video(Path(sys.argv[1]), Path(sys.argv[2]), estimator,
                       VideoOptions(limits=VideoLimits(spill_dir=Path(sys.argv[3]))))
print(report.frames, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def speed(model: Path, backend: str, workdir: Path, frames: int) -> list[dict[str, object]]:
    """frames/s per size and scale, with the decode/encode threads on and off."""
    estimator = DepthEstimator(load_engine(model, backend, 2))
    rows = []
    for label, (width, height) in SPEED_SIZES.items():
        src = make_clip(workdir / f"speed-{label}.mp4", frames, width, height, moving=True)
        for scale, overlap in itertools.product(("clip", "running"), (True, False)):
            out = workdir / f"speed-{label}-{scale}-{overlap}.mp4"
            options = VideoOptions(scale=scale, overlap=overlap, limits=VideoLimits())
            report = convert_video(src, out, estimator, options)
            per_frame = {k: 1000 * v / report.frames for k, v in report.stage_s.items()}
            rows.append(
                {
                    "size": label,
                    "scale": scale,
                    "threads": "decode/encode threads" if overlap else "one thread",
                    "backend": backend,
                    "frames": report.frames,
                    "fps": report.fps,
                    "ms_per_frame": {k: round(v, 2) for k, v in per_frame.items()},
                }
            )
            log.info("video %s %s overlap=%s: %.2f frames/s", label, scale, overlap, report.fps)
    return rows


def flicker(model: Path, backend: str, workdir: Path) -> dict[str, float]:
    """Mean frame-to-frame change (gray levels, 0-255) of the static background while the
    square slides in, per colour scale: 30 frames at 160x120, gray colormap."""
    estimator = DepthEstimator(load_engine(model, backend, 2))
    src = make_clip(workdir / "flicker.mp4", 30, 160, 120, moving=True)
    mask = np.zeros((120, 160), bool)
    mask[:, :48] = True  # the square never reaches the left 48 columns
    return flicker_per_scale(src, mask, estimator, workdir)


def memory(model: Path, backend: str, workdir: Path) -> dict[str, int]:
    """Peak RSS (MB) of a whole conversion, 1280x720, clip scale, 100 and 300 frames."""
    peaks = {}
    for frames in (100, 300):
        src = make_clip(workdir / f"mem-{frames}.mp4", frames, 1280, 720, preset="ultrafast")
        out = workdir / f"mem-{frames}-out.mp4"
        output = subprocess.run(
            # With -c the working directory is importable: the package as it is in ROOT.
            [sys.executable, "-c", MEMORY_SCRIPT, src, out, workdir, model, backend],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout.split()
        peaks[f"{frames} frames"] = int(output[1])
    return peaks


def run(model: Path, backend: str, workdir: Path, frames: int) -> dict[str, object]:
    workdir.mkdir(parents=True, exist_ok=True)
    return {
        "speed": speed(model, backend, workdir, frames),
        "flicker": flicker(model, backend, workdir),
        "memory_mb": memory(model, backend, workdir),
    }


def print_rows(video: dict[str, object]) -> None:
    print("\n## Video (H.264 heatmap MP4, 30000/1001 fps clip with AAC audio)\n")
    print("| frames | scale | pipeline | backend | frames/s | decode | infer | encode |")
    print("|---|---|---|---|---|---|---|---|")
    for r in video["speed"]:
        ms = r["ms_per_frame"]
        print(
            f"| {r['size']} x{r['frames']} | {r['scale']} | {r['threads']} | {r['backend']} | "
            f"{r['fps']:.2f} | {ms['decode']:.1f} ms | {ms['infer']:.1f} ms | "
            f"{ms['encode']:.1f} ms |"
        )
    print("\nFlicker (mean change of static background pixels per frame, gray levels):")
    print(" | ".join(f"{k} {v:.2f}" for k, v in video["flicker"].items()))
    print(
        "Peak RSS, 1280x720, clip scale: "
        + ", ".join(f"{k} {v} MB" for k, v in video["memory_mb"].items())
    )
