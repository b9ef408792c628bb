"""Small video clips made with PyAV for the video tests and devtools/bench.py, and independent
readers of the results (ffprobe, PyAV, the MP4 atom layout)."""

from __future__ import annotations

import functools
import itertools
import json
import struct
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from midas_service.inference.pipeline import DepthEstimator
from midas_service.video.convert import VideoOptions, convert_video

NTSC = Fraction(30000, 1001)


@functools.lru_cache(maxsize=4)
def _background(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    ys, xs = np.mgrid[0:height, 0:width]
    base = 40 + 120 * xs / max(width - 1, 1) + 30 * ys / max(height - 1, 1)
    texture = rng.integers(0, 40, size=(height, width))
    rgb = np.stack([base + texture, base * 0.8 + texture, base * 0.6 + texture], axis=-1)
    rgb[: height // 3, : width // 4] = (250, 30, 30)  # a red corner: shows the orientation
    return np.clip(rgb, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _patch(side: int) -> np.ndarray:
    return (200 + np.random.default_rng(8).integers(0, 55, size=(side, side, 1))).astype(np.uint8)


def scene(index: int, frames: int, width: int, height: int, moving: bool) -> np.ndarray:
    """A static textured background; with ``moving``, a bright textured square that slides in
    from the right edge over the clip (the flicker test's object)."""
    rgb = _background(width, height).copy()
    if moving:
        side = height // 2
        left = round(width - (width * 0.6) * index / max(frames - 1, 1))
        top = height // 4
        right = min(width, left + side)
        if right > left:
            rgb[top : top + side, left:right] = _patch(side)[:, : right - left]
    return rgb


def make_clip(
    path: Path,
    frames: int = 20,
    width: int = 96,
    height: int = 64,
    rate: Fraction = NTSC,
    audio: bool = True,
    rotation: float | None = None,
    vfr_ms: tuple[int, ...] | None = None,
    moving: bool = False,
    faststart: bool = True,
    preset: str = "veryfast",
) -> Path:
    """An H.264 MP4 at ``rate`` (or with frame gaps cycling through ``vfr_ms``) with a mono
    AAC track as long as the video, and optionally a display-matrix rotation."""
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as out:
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": preset}
        if vfr_ms:
            video.time_base = video.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = out.add_stream("aac", rate=48000)
            sound.layout = "mono"
        stamp = 0
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(
                scene(index, frames, width, height, moving), format="rgb24"
            )
            if vfr_ms:
                frame.pts, frame.time_base = stamp, Fraction(1, 1000)
                stamp += vfr_ms[index % len(vfr_ms)]
            else:
                frame.pts = index
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if sound is not None:
            seconds = stamp / 1000 if vfr_ms else float(frames / rate)
            write_tone(out, sound, seconds)
    return path


def write_tone(out: av.container.OutputContainer, sound: av.AudioStream, seconds: float) -> None:
    t = np.arange(int(48000 * seconds)) / 48000
    samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for start in range(0, len(samples), 1024):
        frame = av.AudioFrame.from_ndarray(
            samples[None, start : start + 1024], format="flt", layout="mono"
        )
        frame.sample_rate, frame.pts = 48000, start
        for packet in sound.encode(frame):
            out.mux(packet)
    for packet in sound.encode():
        out.mux(packet)


def make_audio_only(path: Path, seconds: float = 0.5) -> Path:
    with av.open(str(path), "w", format="mp4") as out:
        sound = out.add_stream("aac", rate=48000)
        sound.layout = "mono"
        write_tone(out, sound, seconds)
    return path


def make_empty_video(path: Path) -> Path:
    """A Matroska file with a video track and not one frame in it (and half a second of
    sound: MP4 drops an empty track, and Matroska without any packet is not readable)."""
    with av.open(str(path), "w", format="matroska") as out:
        video = out.add_stream("libx264", rate=NTSC)
        video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
        sound = out.add_stream("aac", rate=48000)
        sound.layout = "mono"
        write_tone(out, sound, 0.5)
    return path


def ffprobe(path: Path) -> dict:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def frame_times(path: Path) -> list[Fraction]:
    """Presentation time of every video frame, exact (pts x time base), read with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [
            Fraction(frame.pts) * Fraction(stream.time_base) for frame in container.decode(stream)
        ]


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(audio=0) if p.dts is not None]


def top_level_atoms(path: Path) -> list[str]:
    """The MP4's top-level box types in file order (moov before mdat = faststart)."""
    names = []
    data = path.read_bytes()
    offset = 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        names.append(kind.decode("latin-1"))
        if size < 8:
            break
        offset += size
    return names


def decoded_frames(path: Path, pix_fmt: str = "rgb24") -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format=pix_fmt) for f in container.decode(video=0)]


def background_flicker(path: Path, mask: np.ndarray) -> float:
    """Mean absolute frame-to-frame change of the gray level over ``mask`` (static pixels)."""
    gray = [f[..., 0].astype(float) for f in decoded_frames(path)]
    return float(np.mean([np.abs(b - a)[mask].mean() for a, b in itertools.pairwise(gray)]))


def flicker_per_scale(
    src: Path, mask: np.ndarray, estimator: DepthEstimator[Any], folder: Path
) -> dict[str, float]:
    """``src`` converted at each colour scale (gray colormap) into ``folder``, and the
    :func:`background_flicker` of each result over ``mask``."""
    flicker = {}
    for scale in ("clip", "running", "frame"):
        out = folder / f"flicker-{scale}.mp4"
        convert_video(src, out, estimator, VideoOptions(scale=scale, colormap="gray"))
        flicker[scale] = background_flicker(out, mask)
    return flicker
