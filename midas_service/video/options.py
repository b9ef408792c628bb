"""What a video conversion makes; checked by the option declarations of midas_service.options."""

from __future__ import annotations

from dataclasses import dataclass, field

from midas_service import options
from midas_service.config import VideoLimits
from midas_service.images.colormap_names import DEFAULT_COLORMAP

RUNNING_MOMENTUM = 0.9  # weight of the past per frame: about 10 frames to follow a change


@dataclass(frozen=True)
class VideoOptions:
    """What to make. ``max_side`` downscales frames (longer side, pixels) before the model."""

    output: str = "heatmap"  # heatmap | side | depth (options.VIDEO_OUTPUT)
    colormap: str = DEFAULT_COLORMAP
    scale: str = "clip"  # clip | running | frame (options.SCALE)
    max_side: int | None = None
    momentum: float = RUNNING_MOMENTUM  # `running` only
    overlap: bool = True  # decode and encode in their own threads, beside inference
    limits: VideoLimits = field(default_factory=VideoLimits)  # settings.video

    @property
    def suffix(self) -> str:
        return options.VIDEO_SUFFIX[self.output]

    def validate(self) -> None:
        """BadParameter (a ValueError) as /jobs and the command give it for these values."""
        given = {"output": [self.output], "colormap": [self.colormap], "scale": [self.scale]}
        if self.max_side is not None:
            given["max_side"] = [str(self.max_side)]
        accepted = options.video_accepted(self.limits.max_side)
        options.video_options(options.parse(given, accepted), self.colormap)
