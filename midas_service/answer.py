"""One path from an upload's bytes to the answer's bytes, for every caller.

The web API and the jobs worker call :func:`answer`'s stages (check, then compute: decode,
predict, render); the ``predict`` command decodes and renders with the same :func:`decode` and
:func:`render`, and a video's frames take the same ``DepthEstimator.predict``. So the same photo
and options give the same bytes everywhere. The web layer adds only HTTP, the
result cache and admission between :func:`check` and :func:`compute`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from midas_service.errors import OutputTooLarge
from midas_service.geometry.camera import DEFAULT_FOV_DEG, fov_from_35mm
from midas_service.geometry.view import clamp_fov
from midas_service.images.decode import (
    ImageHeader,
    decode_pixels,
    focal_length_35mm,
    read_header,
)
from midas_service.images.output_limits import output_refusal
from midas_service.images.outputs import FORMATS, KINDS, RenderOptions
from midas_service.inference.pipeline import DepthEstimator, StageTimes


@dataclass(frozen=True)
class InputLimits:
    max_bytes: int
    max_pixels: int


@dataclass(frozen=True)
class Answer:
    body: bytes
    media_type: str
    suffix: str  # the file name ending of the format (".png")
    download: bool  # the format is a download (Content-Disposition: attachment)


@dataclass
class Timings:
    """Seconds per stage of one answer, for Server-Timing and the metrics."""

    stages: dict[str, float] = field(default_factory=dict)
    threads: int | None = None


def refuse_unfit_output(width: int, height: int, options: RenderOptions) -> None:
    message = output_refusal(width, height, options.output, options.format, options.grid_side)
    if message:
        raise OutputTooLarge(message)


def check(data: bytes, options: RenderOptions, limits: InputLimits) -> ImageHeader:
    """Every refusal that needs no pixel decoded: size, format, dimensions, output limits."""
    header = read_header(data, limits.max_bytes, limits.max_pixels)
    refuse_unfit_output(header.width, header.height, options)
    return header


def with_camera(data: bytes, options: RenderOptions, width: int, height: int) -> RenderOptions:
    """``options`` with the 3D outputs' ``fov`` settled: as given, else from the photo's EXIF
    ``FocalLengthIn35mmFilm``, else the default. Other outputs are returned unchanged."""
    if not KINDS[options.output].geometry or options.fov is not None:
        return options
    focal = focal_length_35mm(data)
    fov = DEFAULT_FOV_DEG if focal is None else clamp_fov(fov_from_35mm(focal, width, height))
    return replace(options, fov=fov)


def render(rgb: np.ndarray, depth: np.ndarray, options: RenderOptions) -> Answer:
    """The answer's bytes for a photo and its depth map. ``rgb`` is uint8 RGB for an 8-bit
    photo coming through :func:`compute`, else float32 RGB in [0, 1]: renderers take both."""
    fmt = FORMATS[options.format]
    body = KINDS[options.output].render(rgb, depth, options)
    return Answer(body, fmt.media_type, fmt.suffix, fmt.download)


def decode(data: bytes, header: ImageHeader) -> np.ndarray:
    """The checked bytes as RGB: 8-bit photos stay uint8 (the float copy exists only during the
    resize): at 40 MP that is 360 MB less held while the answer is rendered
    (docs/operations.md, "Memory"); others are float32 in [0, 1]."""
    return decode_pixels(data, header, keep_8bit=True)


def compute(
    data: bytes,
    header: ImageHeader,
    options: RenderOptions,
    estimator: DepthEstimator,
    timings: Timings | None = None,
) -> Answer:
    """Decode the checked bytes, predict and render; each stage timed into ``timings``."""
    start = time.perf_counter()
    rgb = decode(data, header)
    refuse_unfit_output(rgb.shape[1], rgb.shape[0], options)  # EXIF read otherwise than assumed
    options = with_camera(data, options, rgb.shape[1], rgb.shape[0])
    decoded = time.perf_counter()
    times = StageTimes()
    depth = estimator.predict(rgb, times)
    predicted = time.perf_counter()
    answer = render(rgb, depth, options)
    if timings is not None:
        timings.stages.update(
            decode=decoded - start,
            preprocess=times.preprocess,
            infer=times.infer,
            postprocess=times.postprocess,
            encode=time.perf_counter() - predicted,
        )
    return answer


def answer(
    data: bytes, options: RenderOptions, estimator: DepthEstimator, limits: InputLimits
) -> Answer:
    """check + compute: what /predict answers for these bytes, without HTTP."""
    return compute(data, check(data, options, limits), options, estimator)
