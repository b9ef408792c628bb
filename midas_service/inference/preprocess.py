"""The reference MiDaS input rule: float RGB -> bicubic resize to the 256 bound -> ImageNet norm."""

from __future__ import annotations

import cv2
import numpy as np

NETWORK_SIDE = 256
MULTIPLE = 32
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
INPUT_RULE = (
    "RGB float [0,1]; cv2.INTER_CUBIC resize to fit 256x256 keeping aspect, sides rounded "
    "half-to-even to multiples of 32 (floored if above 256, at least 32); ImageNet mean/std; "
    "output bicubic-upsampled (align_corners=False) to the input size"
)

# Every (height, width) the network can be given: one side NETWORK_SIDE, the other a multiple.
NETWORK_SHAPES = tuple(
    sorted(
        {(side, NETWORK_SIDE) for side in range(MULTIPLE, NETWORK_SIDE + 1, MULTIPLE)}
        | {(NETWORK_SIDE, side) for side in range(MULTIPLE, NETWORK_SIDE + 1, MULTIPLE)}
    )
)


def network_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) fed to the network for an image of the given size."""
    scale = min(NETWORK_SIDE / height, NETWORK_SIDE / width)
    return _fit_side(height * scale), _fit_side(width * scale)


def _fit_side(scaled: float) -> int:
    side = int(np.round(scaled / MULTIPLE)) * MULTIPLE
    if side > NETWORK_SIDE:
        side = int(np.floor(scaled / MULTIPLE)) * MULTIPLE
    return max(side, MULTIPLE)


def to_network_input(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1], or uint8 RGB -> contiguous (1, 3, h, w) float32 network
    input. uint8 is scaled exactly as ``decode.to_float_rgb`` scales it, in a copy that lives
    only for the resize."""
    height, width = network_size(*rgb.shape[:2])
    if rgb.dtype == np.uint8:
        rgb = np.multiply(rgb, np.float32(1.0 / 255.0), dtype=np.float32)
    resized = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_CUBIC)
    # Channel by channel straight into the planar batch: the same numbers as normalising the
    # interleaved image and transposing it, in about half the time (no stride-3 broadcasts).
    batch = np.empty((1, 3, height, width), dtype=np.float32)
    for channel in range(3):
        plane = batch[0, channel]
        np.subtract(resized[:, :, channel], IMAGENET_MEAN[channel], out=plane)
        plane /= IMAGENET_STD[channel]
    return batch
