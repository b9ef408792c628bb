"""What a video conversion makes; no heavy imports, so the CLI parser can use it."""

from __future__ import annotations

from dataclasses import dataclass

from midas_service.images import visualize
from midas_service.video.limits import VideoLimits

SCALES = ("clip", "running", "frame")
RUNNING_MOMENTUM = 0.9  # weight of the past per frame: about 10 frames to follow a change
OUTPUTS = ("heatmap", "side", "depth16")
OUTPUT_SUFFIX = {"heatmap": ".mp4", "side": ".mp4", "depth16": ".mkv"}


@dataclass(frozen=True)
class VideoOptions:
    """What to make. ``max_side`` downscales frames (longer side, pixels) before the model."""

    output: str = "heatmap"  # heatmap | side | depth16
    colormap: str = visualize.DEFAULT_COLORMAP
    scale: str = "clip"  # clip | running | frame
    max_side: int | None = None
    momentum: float = RUNNING_MOMENTUM  # `running` only
    overlap: bool = True  # decode and encode in their own threads, beside inference
    limits: VideoLimits | None = None  # None: VideoLimits.from_env()

    def validate(self) -> None:
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, not {self.output!r}")
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(SCALES)}, not {self.scale!r}")
        if self.colormap not in visualize.COLORMAPS:
            raise ValueError(f"unknown colormap {self.colormap!r}")
        if self.output == "depth16" and self.scale != "clip":
            raise ValueError(
                "depth16 is quantised with one range for the whole clip: use --scale clip"
            )
        if self.max_side is not None and self.max_side < 32:
            raise ValueError("max_side must be at least 32 pixels")
