"""Depth videos out: H.264 MP4 that browsers play, or a lossless 16-bit FFV1 stream in MKV.

Every frame is written with its source timestamp in the source's time base, so the rate
(30000/1001 stays 30000/1001) and variable frame timing survive. Audio packets are copied
as they are (no decoding, no re-encoding) when the output container accepts the codec.
"""

from __future__ import annotations

import contextlib
import logging
import math
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import cv2
import numpy as np

log = logging.getLogger(__name__)

# Metadata keys of a depth16 file: value = lo + code * (hi - lo) / 65535.
DEPTH_MIN_KEY = "MIDAS_DEPTH_MIN"
DEPTH_MAX_KEY = "MIDAS_DEPTH_MAX"
DEPTH_CODE_MAX = 65535
H264_CRF = "18"  # visually lossless for colour maps; the default 23 bands smooth gradients
H264_PRESET = "veryfast"  # encoding is a small share next to inference at this preset
BT601 = 6  # AVCOL_SPC / AVCOL_PRI / AVCOL_TRC_SMPTE170M
LIMITED_RANGE = 1  # AVCOL_RANGE_MPEG


def even(side: int) -> int:
    return side + (side & 1)


class _Writer:
    """Frames go to the encoder one step late: a frame's duration is the gap to the next
    frame's timestamp (the last one's runs to the source's end), and each packet carries it,
    so the output lasts exactly as long as the source. No B-frames: packets leave the encoder
    in presentation order with dts = pts, and the MP4 needs no edit list."""

    video: av.VideoStream
    time_base: Fraction  # of the frames given to write(): the source's

    def __init__(self, container: av.container.OutputContainer) -> None:
        self.container = container
        self.closed = False
        self.pending: av.VideoFrame | None = None
        self.durations: dict[int, int] = {}

    def __enter__(self) -> _Writer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def _queue(self, frame: av.VideoFrame, pts: int) -> None:
        frame.pts = pts
        frame.time_base = self.time_base  # the stream's may change when the header is written
        if self.pending is not None:
            if pts <= self.pending.pts:  # type: ignore[operator]
                raise ValueError(f"timestamps must increase: {pts} after {self.pending.pts}")
            self._encode(self.pending, pts)
        self.pending = frame

    def _encode(self, frame: av.VideoFrame | None, next_pts: int | None = None) -> None:
        if frame is not None and next_pts is not None:
            self.durations[frame.pts] = next_pts - frame.pts  # type: ignore[index,operator]
        for packet in self.video.encode(frame):
            duration = self.durations.pop(packet.pts, None) if packet.pts is not None else None
            if duration:
                packet.duration = duration
            self.container.mux(packet)

    def close(self, end_pts: int | None = None) -> None:
        """Flush and finish the file; ``end_pts``: where the last frame stops showing."""
        if self.closed:
            return
        if self.pending is not None:
            last = self.pending.pts
            self._encode(self.pending, end_pts if end_pts and end_pts > last else None)  # type: ignore[operator]
            self.pending = None
        self._encode(None)
        self.closed = True
        self.container.close()

    def abort(self) -> None:
        """Close without flushing: the caller deletes the half-written file."""
        if not self.closed:
            self.closed = True
            with contextlib.suppress(av.error.FFmpegError):
                self.container.close()


class H264Writer(_Writer):
    """yuv420p H.264 in MP4 with the index up front (``faststart``), audio copied."""

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        time_base: Fraction,
        rate: Fraction,
        audio: av.AudioStream | None = None,
        threads: int = 0,
    ) -> None:
        container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        super().__init__(container)
        try:
            self.width, self.height = even(width), even(height)
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
            self.time_base = stream.time_base = stream.codec_context.time_base = time_base
            stream.codec_context.thread_count = threads
            stream.codec_context.max_b_frames = 0
            # Say what swscale's default RGB -> yuv420p conversion is (BT.601, limited
            # range): untagged, players guess BT.709 for HD sizes and shift the colours.
            context = stream.codec_context
            context.colorspace = context.color_primaries = context.color_trc = BT601
            context.color_range = LIMITED_RANGE
            stream.options = {"crf": H264_CRF, "preset": H264_PRESET}
            self.video = stream
            self.audio: av.AudioStream | None = None
            self.audio_note = "none in the source"
            if audio is not None:
                self.add_audio(audio)
        except BaseException:
            self.abort()
            raise

    def add_audio(self, source: av.AudioStream) -> None:
        codec = source.codec_context.name
        if codec not in self.container.supported_codecs:
            self.audio_note = f"dropped: MP4 cannot hold {codec} audio"
            log.warning("the source's %s audio cannot be copied into MP4; leaving it out", codec)
            return
        self.audio = self.container.add_stream_from_template(source)
        self.audio_note = f"copied ({codec})"

    def write(self, bgr: np.ndarray, pts: int) -> None:
        """One (H, W, 3) uint8 BGR picture at ``pts`` (source time base); odd sides are padded
        by one repeated edge pixel (yuv420p needs even sides)."""
        pad_h, pad_w = self.height - bgr.shape[0], self.width - bgr.shape[1]
        if pad_h or pad_w:
            bgr = cv2.copyMakeBorder(bgr, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
        frame = av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format="yuv420p")
        self._queue(frame, pts)

    def mux_audio(self, packet: av.Packet) -> None:
        if self.audio is not None:
            packet.stream = self.audio
            self.container.mux(packet)

    def take(self, item: av.Packet | tuple[np.ndarray, int]) -> None:
        """What a second pass queues, in order: an audio packet, or a (BGR picture, pts)."""
        if isinstance(item, av.Packet):
            self.mux_audio(item)
        else:
            self.write(*item)


class Depth16Writer(_Writer):
    """Depth quantised to 16 bits with one (lo, hi) for the whole clip, FFV1 gray16le in MKV.

    The range goes into the container's and the stream's metadata, so
    ``lo + code * (hi - lo) / 65535`` recovers the depth within half a step.
    Matroska keeps timestamps in milliseconds: the frame times are kept to 1 ms.
    """

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        time_base: Fraction,
        rate: Fraction,
        lo: float,
        hi: float,
        threads: int = 0,
    ) -> None:
        container = av.open(str(path), "w", format="matroska")
        super().__init__(container)
        try:
            self.lo, self.hi = float(lo), float(hi)
            self.scale = (
                DEPTH_CODE_MAX / (self.hi - self.lo)
                if self.hi > self.lo and math.isfinite(self.hi - self.lo)
                else 0.0
            )
            tags = {
                DEPTH_MIN_KEY: repr(self.lo),
                DEPTH_MAX_KEY: repr(self.hi),
                "MIDAS_DEPTH_FORMULA": "depth = min + code * (max - min) / 65535",
                "MIDAS_DEPTH_MEANING": "relative inverse depth (larger is nearer)",
            }
            container.metadata.update(tags)
            stream = container.add_stream("ffv1", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "gray16le"
            self.time_base = stream.time_base = stream.codec_context.time_base = time_base
            stream.codec_context.thread_count = threads
            stream.options = {"level": "3", "slices": "4", "slicecrc": "1"}
            stream.metadata.update(tags)
            self.video = stream
        except BaseException:
            self.abort()
            raise

    def quantise(self, depth: np.ndarray) -> np.ndarray:
        codes = (depth - np.float32(self.lo)) * np.float32(self.scale)
        np.clip(codes, 0, DEPTH_CODE_MAX, out=codes)
        return np.rint(codes).astype(np.uint16)

    def write(self, depth: np.ndarray, pts: int) -> None:
        self.write_codes(self.quantise(depth), pts)

    def write_codes(self, codes: np.ndarray, pts: int) -> None:
        """One frame already quantised by ``quantise``."""
        self._queue(av.VideoFrame.from_ndarray(codes, format="gray16le"), pts)


def read_depth_range(container: av.container.InputContainer) -> tuple[float, float]:
    """The (lo, hi) a depth16 file was quantised with."""
    tags = {key.upper(): value for key, value in container.metadata.items()}
    return float(tags[DEPTH_MIN_KEY]), float(tags[DEPTH_MAX_KEY])
