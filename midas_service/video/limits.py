"""What a video may be: configured from the environment, checked before and while decoding.

| variable                | default | meaning                                                  |
|-------------------------|---------|----------------------------------------------------------|
| MIDAS_VIDEO_MAX_SIDE    | 4096    | longest accepted frame side in pixels (before --max-side) |
| MIDAS_VIDEO_MAX_FRAMES  | 20000   | most frames in a clip                                     |
| MIDAS_VIDEO_MAX_SECONDS | 900     | longest accepted clip duration                            |
| MIDAS_VIDEO_SPILL_DIR   | system temp folder | where `--scale clip` keeps its raw depth file  |
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class LimitConfigError(ValueError):
    """A MIDAS_VIDEO_* variable has a value that cannot be used."""


@dataclass(frozen=True)
class VideoLimits:
    max_side: int = 4096
    max_frames: int = 20000
    max_seconds: float = 900.0
    spill_dir: Path | None = None  # None: tempfile.gettempdir() at use

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> VideoLimits:
        def get(name: str, default: object) -> str:
            return env.get(name, "").strip() or str(default)

        try:
            limits = cls(
                max_side=int(get("MIDAS_VIDEO_MAX_SIDE", cls.max_side)),
                max_frames=int(get("MIDAS_VIDEO_MAX_FRAMES", cls.max_frames)),
                max_seconds=float(get("MIDAS_VIDEO_MAX_SECONDS", cls.max_seconds)),
                spill_dir=Path(env["MIDAS_VIDEO_SPILL_DIR"])
                if env.get("MIDAS_VIDEO_SPILL_DIR", "").strip()
                else None,
            )
        except ValueError as exc:
            raise LimitConfigError(f"bad number in MIDAS_VIDEO_*: {exc}") from exc
        if limits.max_side < 2 or limits.max_frames < 1 or limits.max_seconds <= 0:
            raise LimitConfigError(
                "MIDAS_VIDEO_MAX_SIDE must be at least 2, MIDAS_VIDEO_MAX_FRAMES and "
                "MIDAS_VIDEO_MAX_SECONDS positive"
            )
        return limits

    def spill_folder(self) -> Path:
        return self.spill_dir if self.spill_dir is not None else Path(tempfile.gettempdir())
