"""The first video stream of a file as upright RGB frames with their exact timestamps.

PyAV (libav* bindings, FFmpeg bundled in its wheels) does the demuxing and decoding. Frames
keep their presentation timestamps in the stream's own time base, so a 30000/1001 clip or a
variable-rate phone clip can be written back with exactly the same timing. The audio stream
is exposed as packets for copying, never decoded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import av.error
import cv2
import numpy as np

from midas_service.config import VideoLimits
from midas_service.video.errors import (
    NoFrames,
    NotAVideo,
    NoVideoStream,
    TruncatedVideo,
    VideoTooLarge,
    VideoTooLong,
)

log = logging.getLogger(__name__)

# FFmpeg reads still images as one-frame "videos"; they belong to `predict`.
STILL_IMAGE_FORMATS = {"image2", "apng"}


@dataclass(frozen=True)
class VideoInfo:
    """What the pipeline needs to know about the source before the first frame."""

    width: int  # upright and after the optional downscale: the frames' size
    height: int
    source_width: int  # as coded in the file
    source_height: int
    rotation: int  # degrees counter-clockwise the player turns the coded picture (0/90/180/270)
    time_base: Fraction
    rate: Fraction  # average (or guessed) frame rate, exact
    frame_count: int | None  # what the container declares; None when it does not say
    duration_s: float | None
    start_pts: int | None
    end_pts: int | None  # where the last frame stops showing, in time_base, if declared
    audio_codec: str | None  # the first audio stream's codec, None without audio
    format_name: str


@dataclass
class DecodedFrame:
    index: int
    rgb: np.ndarray  # (H, W, 3) uint8 RGB, upright
    pts: int  # in VideoInfo.time_base
    duration: int  # in VideoInfo.time_base; 0 when unknown


def fit_side(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) scaled down to fit ``max_side``, kept even for yuv420p; never upscaled."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def rotation_of(angle: float | None) -> int:
    """A display-matrix angle (counter-clockwise, any sign) as 0, 90, 180 or 270."""
    if not angle:
        return 0
    return round(angle / 90.0) % 4 * 90


class VideoReader:
    """One pass over a video file; open it again for a second pass."""

    def __init__(
        self, path: Path, limits: VideoLimits | None = None, max_side: int | None = None
    ) -> None:
        self.path = Path(path)
        self.limits = limits or VideoLimits()
        self.max_side = max_side
        self.container = open_container(self.path)
        try:
            self.stream = first_video_stream(self.container, self.path)
            self.audio = self.container.streams.audio[0] if self.container.streams.audio else None
            self.info = describe(self.path, self.container, self.stream, self.audio, max_side)
            check_limits(self.info, self.limits, self.path)
        except BaseException:
            self.container.close()
            raise
        self.stream.thread_type = "AUTO"

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    def frames(self) -> Iterator[DecodedFrame]:
        """Every frame of the video stream, upright and downscaled, in presentation order."""
        for item in self.items(with_audio=False):
            assert isinstance(item, DecodedFrame)
            yield item

    def items(self, with_audio: bool = True) -> Iterator[DecodedFrame | av.Packet]:
        """Frames and (if ``with_audio``) the first audio stream's packets, in file order.

        Raises TruncatedVideo if the file is damaged or ends before its declared frame count,
        NoFrames if nothing decodes, VideoTooLong past the limits.
        """
        streams = [self.stream] + ([self.audio] if with_audio and self.audio else [])
        count = 0
        last_pts: int | None = None
        try:
            for packet in self.container.demux(*streams):
                if packet.stream.type == "audio":
                    if packet.dts is not None:  # the demuxer's empty flush packet has none
                        yield packet
                    continue
                for frame in packet.decode():
                    decoded = self.convert(frame, count, last_pts)  # type: ignore[arg-type]
                    last_pts = decoded.pts
                    count += 1
                    self.check_length(count, decoded.pts)
                    yield decoded
        except av.error.FFmpegError as exc:
            raise TruncatedVideo(
                f"{self.path}: the video is damaged or cut short after {count} frames ({exc})"
            ) from exc
        if count == 0:
            raise NoFrames(f"{self.path}: the video stream has no frames")
        declared = self.info.frame_count
        if declared is not None and count < declared:
            raise TruncatedVideo(
                f"{self.path}: the file is cut short: it ends after {count} of its {declared} "
                "frames (an interrupted copy or upload?)"
            )

    def convert(self, frame: av.VideoFrame, index: int, last_pts: int | None) -> DecodedFrame:
        info = self.info
        rgb = frame.to_ndarray(format="rgb24")
        k = info.rotation // 90
        if k:
            rgb = np.ascontiguousarray(np.rot90(rgb, k))  # type: ignore[assignment]
        if rgb.shape[:2] != (info.height, info.width):
            rgb = cv2.resize(rgb, (info.width, info.height), interpolation=cv2.INTER_AREA)  # type: ignore[assignment]
        pts = frame.pts
        if pts is None:  # raw elementary streams carry no timestamps: count frames instead
            pts = round(index / info.rate / info.time_base)
        if last_pts is not None and pts <= last_pts:  # broken files only; encoders need order
            pts = last_pts + 1
        return DecodedFrame(index, rgb, int(pts), int(frame.duration or 0))

    def check_length(self, count: int, pts: int) -> None:
        limits = self.limits
        if count > limits.max_frames:
            raise VideoTooLong(
                f"{self.path}: more than {limits.max_frames} frames "
                "(MIDAS_VIDEO_MAX_FRAMES limits the length)"
            )
        start = self.info.start_pts or 0
        if float((pts - start) * self.info.time_base) > limits.max_seconds:
            raise VideoTooLong(
                f"{self.path}: longer than {limits.max_seconds:g} s "
                "(MIDAS_VIDEO_MAX_SECONDS limits the length)"
            )


class AudioSource:
    """The first audio stream's packets alone (no video decoding), for a pass that has the
    frames already; the stream stays open to serve as the output's template."""

    def __init__(self, path: Path) -> None:
        self.container = open_container(Path(path))
        self.stream = self.container.streams.audio[0] if self.container.streams.audio else None

    def packets(self) -> Iterator[av.Packet]:
        if self.stream is None:
            return
        for packet in self.container.demux(self.stream):
            if packet.dts is not None:
                yield packet

    def close(self) -> None:
        self.container.close()


def open_container(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), "r")
    except av.error.FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: no such file") from exc
    except av.error.FFmpegError as exc:
        if is_mp4_without_index(path):
            raise TruncatedVideo(
                f"{path}: an MP4 without its index (moov box): the file is cut short or damaged"
            ) from exc
        raise NotAVideo(f"{path}: not a video file FFmpeg can read ({exc})") from exc


def is_mp4_without_index(path: Path) -> bool:
    """An ISO media file (``ftyp`` first) whose top-level boxes hold no ``moov``: the usual
    result of cutting a recording whose index was to be written at the end."""
    try:
        with open(path, "rb") as handle:
            size = path.stat().st_size
            offset, kinds = 0, []
            while offset + 8 <= size:
                handle.seek(offset)
                head = handle.read(16)
                box = int.from_bytes(head[:4], "big")
                kinds.append(head[4:8])
                if box == 1 and len(head) == 16:
                    box = int.from_bytes(head[8:16], "big")
                if box < 8:
                    break
                offset += box
    except OSError:
        return False
    return bool(kinds) and kinds[0] == b"ftyp" and b"moov" not in kinds


def first_video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    name = container.format.name
    if name in STILL_IMAGE_FORMATS or name.endswith("_pipe"):
        raise NotAVideo(f"{path}: a still image ({name}), not a video; use `predict` for images")
    if not container.streams.video:
        what = "audio only" if container.streams.audio else "no audio or video"
        raise NoVideoStream(f"{path}: the file has no video stream ({what})")
    return container.streams.video[0]


def describe(
    path: Path,
    container: av.container.InputContainer,
    stream: av.VideoStream,
    audio: av.AudioStream | None,
    max_side: int | None,
) -> VideoInfo:
    context = stream.codec_context
    rotation = rotation_of(display_rotation(path, stream))
    coded_w, coded_h = context.width, context.height
    upright_w, upright_h = (coded_h, coded_w) if rotation in (90, 270) else (coded_w, coded_h)
    width, height = fit_side(upright_w, upright_h, max_side)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(30)
    duration_s = None
    if stream.duration is not None and stream.time_base:
        duration_s = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration_s = container.duration / av.time_base
    return VideoInfo(
        width=width,
        height=height,
        source_width=coded_w,
        source_height=coded_h,
        rotation=rotation,
        time_base=Fraction(stream.time_base),  # type: ignore[arg-type]
        rate=Fraction(rate),
        frame_count=stream.frames or None,
        duration_s=duration_s,
        start_pts=stream.start_time,
        end_pts=(stream.start_time or 0) + stream.duration if stream.duration else None,
        audio_codec=audio.codec_context.name if audio is not None else None,
        format_name=container.format.name,
    )


def display_rotation(path: Path, stream: av.VideoStream) -> float | None:
    """The counter-clockwise display angle: the display matrix, which FFmpeg attaches to the
    decoded frames (probed on the first frame, from a second opening of the file), or the
    legacy ``rotate`` tag (clockwise) of older muxers."""
    try:
        with av.open(str(path), "r") as probe:
            first = next(probe.decode(video=0), None)  # our stream is always the first video
    except (av.error.FFmpegError, StopIteration):
        first = None  # damaged: the decoding pass says so
    else:
        if first is None:
            raise NoFrames(f"{path}: the video stream has no frames")
    if first is not None and first.rotation:
        return float(first.rotation)
    tag = stream.metadata.get("rotate")
    if tag:
        try:
            return -float(tag)
        except ValueError:
            return None
    return None


def check_limits(info: VideoInfo, limits: VideoLimits, path: Path) -> None:
    side = max(info.source_width, info.source_height)
    if side > limits.max_side:
        raise VideoTooLarge(
            f"{path}: {info.source_width}x{info.source_height} frames are larger than "
            f"{limits.max_side} px a side (MIDAS_VIDEO_MAX_SIDE)"
        )
    if info.frame_count is not None and info.frame_count > limits.max_frames:
        raise VideoTooLong(
            f"{path}: {info.frame_count} frames, more than {limits.max_frames} "
            "(MIDAS_VIDEO_MAX_FRAMES)"
        )
    if info.duration_s is not None and info.duration_s > limits.max_seconds:
        raise VideoTooLong(
            f"{path}: {info.duration_s:.1f} s long, more than {limits.max_seconds:g} s "
            "(MIDAS_VIDEO_MAX_SECONDS)"
        )
