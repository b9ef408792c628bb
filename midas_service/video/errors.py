"""Typed reasons a video cannot be converted; each message is one line a user can act on."""

from __future__ import annotations


class VideoError(ValueError):
    """The input cannot be turned into a depth video; nothing was written."""


class NotAVideo(VideoError):
    """The file is not a container FFmpeg can read, or it holds a still image."""


class NoVideoStream(VideoError):
    """The container has no video stream (audio only, subtitles only)."""


class NoFrames(VideoError):
    """The video stream decodes to no frame at all."""


class TruncatedVideo(VideoError):
    """The file ends before its own header says it should (an interrupted copy or upload)."""


class VideoTooLarge(VideoError):
    """The frames are larger than MIDAS_VIDEO_MAX_SIDE."""


class VideoTooLong(VideoError):
    """The clip is longer than MIDAS_VIDEO_MAX_FRAMES or MIDAS_VIDEO_MAX_SECONDS."""


class NotEnoughDisk(VideoError):
    """The clip scale's spill file would not fit in the spill folder's free space."""
