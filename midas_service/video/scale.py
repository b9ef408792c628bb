"""Colour-range policies: which (lo, hi) maps a frame's depth to the colormap.

- ``clip``: one range for the whole clip, from a first pass whose raw depth is spilled to a
  file on disk (never all frames in memory); the second pass colours every frame with it.
  Steady colours; needs the whole file first.
- ``running``: an exponential moving average of each frame's min and max, for streams:
  steady over a few frames, follows slow changes, one pass.
- ``frame``: each frame's own min-max, like a photo. Flickers whenever something enters
  the picture; kept for comparison.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from midas_service.video.errors import NotEnoughDisk
from midas_service.video.options import RUNNING_MOMENTUM

log = logging.getLogger(__name__)


def frame_range(depth: np.ndarray) -> tuple[float, float]:
    low, high, _, _ = cv2.minMaxLoc(depth)
    return float(low), float(high)


class RunningRange:
    """Exponential moving average of the per-frame min and max."""

    def __init__(self, momentum: float = RUNNING_MOMENTUM) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError("the running-range momentum must be in [0, 1)")
        self.momentum = momentum
        self.low: float | None = None
        self.high: float | None = None

    def update(self, depth: np.ndarray) -> tuple[float, float]:
        low, high = frame_range(depth)
        if self.low is None or self.high is None:
            self.low, self.high = low, high
        else:
            keep = self.momentum
            self.low = keep * self.low + (1.0 - keep) * low
            self.high = keep * self.high + (1.0 - keep) * high
        return self.low, self.high


class DepthSpill:
    """Raw float32 depth frames appended to one temporary file, read back in order.

    Reads go through a reused buffer, not a memory map, so the file's pages are not counted
    in the process's resident memory however long the clip is.
    """

    def __init__(self, folder: Path, height: int, width: int) -> None:
        self.height, self.width = height, width
        self.frame_bytes = height * width * 4
        handle, name = tempfile.mkstemp(prefix="midas-depth-", suffix=".f32", dir=folder)
        self.path = Path(name)
        self.file = os.fdopen(handle, "w+b")
        self.count = 0
        self.low = float("inf")
        self.high = float("-inf")

    def __enter__(self) -> DepthSpill:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def append(self, depth: np.ndarray) -> None:
        if depth.shape != (self.height, self.width):
            raise ValueError(f"depth {depth.shape} does not match {self.height}x{self.width}")
        low, high = frame_range(depth)
        self.low, self.high = min(self.low, low), max(self.high, high)
        try:
            self.file.write(np.ascontiguousarray(depth, dtype=np.float32).data)
        except OSError as exc:
            raise NotEnoughDisk(
                f"cannot spill depth to {self.path.parent} ({exc}); set MIDAS_VIDEO_SPILL_DIR "
                "to a folder with more room, or use --scale running"
            ) from exc
        self.count += 1

    @property
    def range(self) -> tuple[float, float]:
        return self.low, self.high

    def frames(self) -> Iterator[np.ndarray]:
        """Every spilled frame in order; each array is overwritten by the next one."""
        self.file.flush()
        self.file.seek(0)
        buffer = np.empty((self.height, self.width), dtype=np.float32)
        for index in range(self.count):
            if self.file.readinto(buffer.data) != self.frame_bytes:
                raise OSError(f"{self.path}: spilled depth frame {index} is incomplete")
            yield buffer

    def close(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


def check_spill_room(folder: Path, frames: int, height: int, width: int) -> None:
    """Refuse up front when ``frames`` depth frames cannot fit in the spill folder."""
    need = frames * height * width * 4
    free = shutil.disk_usage(folder).free
    if need > free * 0.9:
        raise NotEnoughDisk(
            f"--scale clip keeps {need / 1e9:.1f} GB of raw depth for this clip and {folder} "
            f"has {free / 1e9:.1f} GB free; set MIDAS_VIDEO_SPILL_DIR, use --max-side, "
            "or use --scale running"
        )
