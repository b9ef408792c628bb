"""Video file in, depth video file out, on the same per-frame pipeline as ``/predict``.

Each frame: decoded RGB (uint8, upright) -> ``DepthEstimator.predict`` (as a photo's)
-> depth at the frame's size -> colours with the chosen range policy -> encoder. The output
is written under a temporary name beside ``dst`` and renamed at the very end, so an error,
a crash or Ctrl-C never leaves a file under the final name.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from midas_service.config import VideoLimits
from midas_service.images import visualize
from midas_service.inference.pipeline import DepthEstimator
from midas_service.video.errors import TruncatedVideo, VideoError
from midas_service.video.options import VideoOptions
from midas_service.video.reader import AudioSource, DecodedFrame, VideoInfo, VideoReader
from midas_service.video.scale import DepthSpill, RunningRange, check_spill_room
from midas_service.video.stages import Consumer, Inline, Timer, prefetch, timed
from midas_service.video.writer import Depth16Writer, H264Writer

log = logging.getLogger(__name__)

Progress = Callable[[int, int | None], None]


@dataclass
class VideoReport:
    """What was made, and where the time went (seconds summed per stage)."""

    output: str
    scale: str
    frames: int
    width: int
    height: int
    rate: str  # exact, e.g. "30000/1001"
    time_base: str
    duration_s: float | None
    rotation: int
    audio: str
    depth_range: tuple[float, float] | None = None  # the clip range (clip scale)
    passes: int = 1
    seconds: float = 0.0
    stage_s: dict[str, float] = field(default_factory=dict)  # decode / infer / encode

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fps": round(self.fps, 3)}


def temporary_name(dst: Path) -> Path:
    """A hidden name beside ``dst``, so the final rename stays on one file system."""
    return dst.with_name(f".{dst.name}.{secrets.token_hex(4)}.part")


def convert_video(
    src: Path,
    dst: Path,
    estimator: DepthEstimator,
    options: VideoOptions | None = None,
    progress: Progress | None = None,
) -> VideoReport:
    """Write the depth video of ``src`` to ``dst``; raise VideoError (nothing written) on bad
    input. ``progress(done, total)`` counts frame steps: every frame once per pass, so with
    ``scale="clip"`` (two passes) ``total`` is twice the frame count; None when unknown."""
    options = options or VideoOptions()
    options.validate()
    src, dst = Path(src), Path(dst)
    if not dst.parent.is_dir():
        raise FileNotFoundError(f"the output folder {dst.parent} does not exist")
    tmp = temporary_name(dst)
    start = time.perf_counter()
    try:
        job = _Conversion(src, tmp, estimator, options, progress)
        report = job.run()
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    report.seconds = time.perf_counter() - start
    log.info(
        "%s -> %s: %d frames, %.2f frames/s, stages %s",
        src,
        dst,
        report.frames,
        report.fps,
        {k: round(v, 2) for k, v in report.stage_s.items()},
    )
    return report


def most_frames(info: VideoInfo, limits: VideoLimits) -> int:
    """The frames the clip scale may spill: the declared count, else the declared duration
    at the frame rate, else the most the reader lets through (MIDAS_VIDEO_MAX_FRAMES and
    MIDAS_VIDEO_MAX_SECONDS at the frame rate)."""
    if info.frame_count is not None:
        return info.frame_count
    seconds = info.duration_s if info.duration_s is not None else limits.max_seconds
    return min(limits.max_frames, math.ceil(seconds * float(info.rate)) + 1)


class _Conversion:
    def __init__(
        self,
        src: Path,
        tmp: Path,
        estimator: DepthEstimator,
        options: VideoOptions,
        progress: Progress | None,
    ) -> None:
        self.src, self.tmp, self.estimator, self.options = src, tmp, estimator, options
        self.limits = options.limits
        self.progress = progress or (lambda done, total: None)
        self.timers = {"decode": Timer(), "infer": Timer(), "encode": Timer()}
        self.done = 0

    def open_reader(self) -> VideoReader:
        return VideoReader(self.src, self.limits, self.options.max_side)

    def run(self) -> VideoReport:
        with self.open_reader() as reader:
            info = reader.info
            if self.options.scale == "clip":
                report = self.two_passes(reader)
            else:
                report = self.one_pass(reader)
        report.stage_s = {name: round(t.seconds, 3) for name, t in self.timers.items()}
        log.debug("converted %s (%s)", self.src, info)
        return report

    # -- helpers ---------------------------------------------------------------------------

    def report(self, info: VideoInfo, frames: int, audio: str, passes: int) -> VideoReport:
        width = info.width * (2 if self.options.output == "side" else 1)
        return VideoReport(
            output=self.options.output,
            scale=self.options.scale,
            frames=frames,
            width=width,
            height=info.height,
            rate=str(info.rate),
            time_base=str(info.time_base),
            duration_s=info.duration_s,
            rotation=info.rotation,
            audio=audio,
            passes=passes,
        )

    def step(self, total: int | None) -> None:
        self.done += 1
        self.progress(self.done, total)

    def predict(self, frame: DecodedFrame) -> np.ndarray:
        with self.timers["infer"]:
            return self.estimator.predict(frame.rgb)  # uint8, as /predict passes a photo

    def picture(
        self, rgb: np.ndarray | None, depth: np.ndarray, rng: tuple[float, float] | None
    ) -> np.ndarray:
        colormap = self.options.colormap
        if rng is None:  # per-frame min-max: exactly /predict's heatmap
            heat = visualize.heatmap(depth, colormap)
        else:
            heat = visualize.heatmap_range(depth, rng[0], rng[1], colormap)
        if self.options.output == "side":
            assert rgb is not None
            return visualize.side_by_side(rgb, heat)
        return heat

    def h264(self, info: VideoInfo, audio: av.AudioStream | None) -> H264Writer:
        width = info.width * (2 if self.options.output == "side" else 1)
        return H264Writer(self.tmp, width, info.height, info.time_base, info.rate, audio)

    def source(self, items: Iterator[Any]) -> Iterator[Any]:
        timed_items = timed(items, self.timers["decode"])
        return prefetch(timed_items) if self.options.overlap else timed_items

    def sink(self, handle: Callable[[Any], None]) -> Consumer[Any] | Inline[Any]:
        def measured(item: Any) -> None:
            with self.timers["encode"]:
                handle(item)

        return Consumer(measured) if self.options.overlap else Inline(measured)

    # -- one pass: running / frame ---------------------------------------------------------

    def one_pass(self, reader: VideoReader) -> VideoReport:
        info = reader.info
        writer = self.h264(info, reader.audio)
        running = RunningRange(self.options.momentum) if self.options.scale == "running" else None

        def encode(item: Any) -> None:
            if isinstance(item, av.Packet):
                writer.mux_audio(item)
            else:
                rgb, depth, pts, rng = item
                writer.write(self.picture(rgb, depth, rng), pts)

        sink = self.sink(encode)
        frames, last = 0, None
        try:
            with closing(self.source(reader.items())) as items:  # type: ignore[type-var]
                for item in items:
                    if isinstance(item, av.Packet):
                        sink.put(item)
                        continue
                    depth = self.predict(item)
                    rng = running.update(depth) if running is not None else None
                    sink.put((item.rgb, depth, item.pts, rng))
                    frames, last = frames + 1, item
                    self.step(info.frame_count)
            sink.finish()
            writer.close(end_pts(info, last))
        except BaseException:
            sink.cancel()
            writer.abort()
            raise
        return self.report(info, frames, writer.audio_note, passes=1)

    # -- two passes: clip ------------------------------------------------------------------

    def two_passes(self, reader: VideoReader) -> VideoReport:
        info = reader.info
        folder = self.limits.spill_folder()
        check_spill_room(folder, most_frames(info, self.limits), info.height, info.width)
        total = 2 * info.frame_count if info.frame_count else None
        with DepthSpill(folder, info.height, info.width) as spill:
            timestamps: list[int] = []
            last = None
            with closing(self.source(reader.frames())) as frames:  # type: ignore[type-var]
                for frame in frames:
                    spill.append(self.predict(frame))
                    timestamps.append(frame.pts)
                    last = frame
                    self.step(total)
            reader.close()
            total = 2 * len(timestamps)
            rng = spill.range
            end = end_pts(info, last)
            if self.options.output == "depth":
                audio = self.write_depth16(info, spill, timestamps, end, total)
            elif self.options.output == "side":
                audio = self.write_side(spill, timestamps, end, total, rng)
            else:
                audio = self.write_heatmap(info, spill, timestamps, end, total, rng)
        report = self.report(info, len(timestamps), audio, passes=2)
        report.depth_range = rng
        return report

    def write_depth16(
        self, info: VideoInfo, spill: DepthSpill, timestamps: list[int], end: int, total: int
    ) -> str:
        lo, hi = spill.range
        writer = Depth16Writer(self.tmp, info.width, info.height, info.time_base, info.rate, lo, hi)
        sink = self.sink(lambda item: writer.write_codes(*item))
        try:
            for depth, pts in zip(spill.frames(), timestamps, strict=True):
                sink.put((writer.quantise(depth), pts))  # a new array: the buffer is reused
                self.step(total)
            sink.finish()
            writer.close(end)
        except BaseException:
            sink.cancel()
            writer.abort()
            raise
        return "not kept (a depth video holds depth only)"

    def write_heatmap(
        self,
        info: VideoInfo,
        spill: DepthSpill,
        timestamps: list[int],
        end: int,
        total: int,
        rng: tuple[float, float],
    ) -> str:
        """Second pass from the spill alone; the audio packets come from a demux of the audio
        stream (no video decoding), each muxed before the first frame that starts after it."""
        audio_source = AudioSource(self.src)
        try:
            writer = self.h264(info, audio_source.stream)
        except BaseException:
            audio_source.close()
            raise

        sink = self.sink(writer.take)
        try:
            packets = audio_source.packets()
            waiting = next(packets, None)
            for depth, pts in zip(spill.frames(), timestamps, strict=True):
                at = pts * info.time_base
                while waiting is not None and packet_time(waiting) <= at:
                    sink.put(waiting)
                    waiting = next(packets, None)
                sink.put((self.picture(None, depth, rng), pts))
                self.step(total)
            while waiting is not None:
                sink.put(waiting)
                waiting = next(packets, None)
            sink.finish()
            writer.close(end)
        except BaseException:
            sink.cancel()
            writer.abort()
            raise
        finally:
            audio_source.close()
        return writer.audio_note

    def write_side(
        self,
        spill: DepthSpill,
        timestamps: list[int],
        end: int,
        total: int,
        rng: tuple[float, float],
    ) -> str:
        """Second pass decoding the source again: the side-by-side needs the frames."""
        with self.open_reader() as reader:
            writer = self.h264(reader.info, reader.audio)

            sink = self.sink(writer.take)
            depths = spill.frames()
            count = 0
            try:
                with closing(self.source(reader.items())) as items:  # type: ignore[type-var]
                    for item in items:
                        if isinstance(item, av.Packet):
                            sink.put(item)
                            continue
                        depth = next(depths, None)
                        if depth is None or count >= len(timestamps):
                            raise TruncatedVideo(f"{self.src}: the second pass found more frames")
                        sink.put((self.picture(item.rgb, depth, rng), timestamps[count]))
                        count += 1
                        self.step(total)
                if count != len(timestamps):
                    raise TruncatedVideo(f"{self.src}: the second pass found fewer frames")
                sink.finish()
                writer.close(end)
            except BaseException:
                sink.cancel()
                writer.abort()
                raise
        return writer.audio_note


def packet_time(packet: av.Packet) -> Fraction:
    stamp = packet.pts if packet.pts is not None else packet.dts
    return Fraction(stamp or 0) * Fraction(packet.time_base)


def end_pts(info: VideoInfo, last: DecodedFrame | None) -> int:
    """Where the last frame stops showing: the stream's declared end, else one frame on."""
    if last is None:
        raise VideoError("no frames")  # the reader raises NoFrames before this
    if info.end_pts is not None and info.end_pts > last.pts:
        return info.end_pts
    step = last.duration or max(1, round(1 / (info.rate * info.time_base)))
    return last.pts + step
