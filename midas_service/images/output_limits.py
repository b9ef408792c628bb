"""What each output format can hold, checked from the image size before any work is spent.

Every limit below was measured with this project's OpenCV (5.0) and is tested at and just over
its value:

| output         | format          | picture size     | limit                               |
|----------------|-----------------|------------------|-------------------------------------|
| heatmap        | jpeg            | W x H            | each side <= 65,500 (libjpeg)        |
| side           | jpeg            | 2W x H           | each side <= 65,500 (libjpeg)        |
| heatmap / side | png             | W x H / 2W x H   | each side <= 1,000,000 (libpng)      |
| depth          | png16           | W x H            | each side <= 1,000,000 (libpng)      |
| depth          | json            | W x H            | W x H <= 2,000,000 (cost, see below) |
| depth          | npy, pfm        | W x H            | none beyond the input limits         |
| pointcloud     | ply             | grid (max_side)  | each side <= 1,024 (the grid cap)    |
| mesh           | glb             | grid (max_side)  | each side <= 1,024 (the grid cap)    |

The input limits (``decode.MAX_SIDE`` and ``MIDAS_MAX_PIXELS``) apply first, so heatmap png,
png16, npy and pfm always fit; so do ply and glb, whose grid ``max_side`` is refused above the
cap as a bad parameter.
"""

from __future__ import annotations

from midas_service.geometry.grid import DEFAULT_MAX_SIDE
from midas_service.images.outputs import FORMATS, KINDS


def output_size(
    width: int, height: int, output: str, max_side: int = DEFAULT_MAX_SIDE
) -> tuple[int, int]:
    """(width, height) of the answer (its vertex grid for 3D) for an image of width x height."""
    return KINDS[output].size(width, height, max_side)


def _exceeded(
    width: int, height: int, output: str, fmt: str, max_side: int = DEFAULT_MAX_SIDE
) -> str | None:
    """The limit of ``fmt`` that the answer would break, in words, or None."""
    out_width, out_height = output_size(width, height, output, max_side)
    side = FORMATS[fmt].max_side
    if side is not None and max(out_width, out_height) > side:
        return f"{fmt} is limited to {side} pixels per side"
    pixels = FORMATS[fmt].max_pixels
    if pixels is not None and out_width * out_height > pixels:
        return f"{fmt} is limited to {pixels} pixels"
    return None


def _one_of(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def output_refusal(
    width: int, height: int, output: str, fmt: str, max_side: int = DEFAULT_MAX_SIDE
) -> str | None:
    """None if the answer fits its format, else a message naming the limit and what would fit."""
    problem = _exceeded(width, height, output, fmt, max_side)
    if problem is None:
        return None
    out_width, out_height = output_size(width, height, output, max_side)
    fitting = [
        f for f in KINDS[output].formats if _exceeded(width, height, output, f, max_side) is None
    ]
    if fitting:
        instead = "use format=" + _one_of(fitting)
    else:  # only a side-by-side wider than the PNG limit gets here
        instead = "use output=heatmap&format=png or output=depth"
    return (
        f"output={output}&format={fmt} would be a {out_width}x{out_height} picture for this "
        f"{width}x{height} image, and {problem}; {instead}"
    )
