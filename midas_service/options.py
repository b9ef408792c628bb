"""Every option a caller can give, declared once: name, type, range, default and meaning.

``/predict``, ``/jobs``, the ``predict`` and ``video`` commands and the OpenAPI document all
read these declarations: the web layer hands :func:`parse` the query and form values, a command
gets its flags from :func:`add_arguments`, and the rules between options (``format`` follows
``output``, the 3D options only with a 3D output, ``output=depth`` of a video only with
``scale=clip``) are in :func:`photo_options` and :func:`video_options`. A bad value is a
:class:`~midas_service.errors.BadParameter` naming the option, the same from every front end.

Adding an option is one :class:`Option` here, added to the tuple of the requests it belongs to.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from midas_service.errors import BadParameter
from midas_service.geometry.camera import DEFAULT_FOV_DEG
from midas_service.geometry.depth import DEFAULT_FAR, DEFAULT_NEAR
from midas_service.geometry.grid import DEFAULT_MAX_SIDE, MAX_GRID_SIDE, MIN_GRID_SIDE
from midas_service.geometry.view import FAR_MAX, FOV_MAX_DEG, FOV_MIN_DEG, NEAR_MIN
from midas_service.images.colormap_names import COLORMAP_NAMES, DEFAULT_COLORMAP
from midas_service.images.outputs import FORMATS, KINDS

WHOLE = re.compile(r"[0-9]{1,9}")  # ASCII digits: int() also takes "²", "٣" and "1_0"
VIDEO_OUTPUTS = ("heatmap", "side", "depth")
VIDEO_SUFFIX = {"heatmap": ".mp4", "side": ".mp4", "depth": ".mkv"}
SCALES = ("clip", "running", "frame")
THREE_D = tuple(name for name, kind in KINDS.items() if kind.geometry)
MIN_FRAME_SIDE = 32


@dataclass(frozen=True)
class Option:
    """One option: ``kind`` is choice, number or whole; ``low``/``high`` bound a number
    (``open_low``/``open_high``: the bound itself is refused)."""

    name: str
    kind: str
    meaning: str
    default: Any = None
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, raw: str) -> Any:
        """The value of ``raw`` (a query value, a form field, a flag), or BadParameter."""
        text = raw.strip()
        if self.kind == "choice":
            value = text.lower()
            if value not in self.choices:
                raise BadParameter(
                    f"{self.name} must be one of {', '.join(self.choices)}; got {text[:40]!r}"
                )
            return value
        if self.kind == "whole":
            if not WHOLE.fullmatch(text):
                raise BadParameter(
                    f"{self.name} must be a whole number{self._range()}; got {text[:40]!r}"
                )
            number: float = int(text)
        else:
            try:
                number = float(text)
            except ValueError:
                raise BadParameter(f"{self.name} must be a number; got {text[:40]!r}") from None
            if not math.isfinite(number):
                raise BadParameter(f"{self.name} must be a finite number; got {text[:40]!r}")
        self.check(number)
        return number

    def check(self, number: float) -> None:
        too_low = self.low is not None and (
            number <= self.low if self.open_low else number < self.low
        )
        too_high = self.high is not None and (
            number >= self.high if self.open_high else number > self.high
        )
        if too_low or too_high:
            kind = "a whole number" if self.kind == "whole" else "a number"
            raise BadParameter(f"{self.name} must be {kind}{self._range()}; got {number:g}")

    def _range(self) -> str:
        if self.low is not None and self.high is not None and not (self.open_low or self.open_high):
            return f" from {self.low:g} to {self.high:g}"
        parts = []
        if self.low is not None:
            parts.append(f"{'above' if self.open_low else 'at least'} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'below' if self.open_high else 'at most'} {self.high:g}")
        return (" " + " and ".join(parts)) if parts else ""

    def schema(self) -> dict[str, Any]:
        """The OpenAPI schema of the value."""
        if self.kind == "choice":
            schema: dict[str, Any] = {"type": "string", "enum": list(self.choices)}
        else:
            schema = {"type": "integer" if self.kind == "whole" else "number"}
            if self.low is not None:
                schema["exclusiveMinimum" if self.open_low else "minimum"] = self.low
            if self.high is not None:
                schema["exclusiveMaximum" if self.open_high else "maximum"] = self.high
        if self.default is not None:
            schema["default"] = self.default
        return schema


COLORMAP = Option(
    "colormap", "choice", "heatmap colours (near is bright)", DEFAULT_COLORMAP, COLORMAP_NAMES
)
OUTPUT = Option(
    "output",
    "choice",
    "what to return: a heatmap, raw depth, the photo beside its heatmap, or 3D",
    "heatmap",
    tuple(KINDS),
)
FORMAT = Option(
    "format",
    "choice",
    "the file format; each output offers its own, the first is its default",
    None,
    tuple(FORMATS),
)
FOV = Option(
    "fov",
    "number",
    f"3D: horizontal angle of view in degrees (default: from EXIF, else {DEFAULT_FOV_DEG:g})",
    None,
    low=FOV_MIN_DEG,
    high=FOV_MAX_DEG,
)
NEAR = Option(
    "near",
    "number",
    "3D: depth of the nearest point; below far",
    DEFAULT_NEAR,
    low=NEAR_MIN,
    high=FAR_MAX,
    open_high=True,
)
FAR = Option(
    "far", "number", "3D: depth of the farthest point; above near", DEFAULT_FAR, high=FAR_MAX
)
GRID_SIDE = Option(
    "grid_side",
    "whole",
    "3D: most vertices per side of the grid",
    DEFAULT_MAX_SIDE,
    low=MIN_GRID_SIDE,
    high=MAX_GRID_SIDE,
)
VIDEO_OUTPUT = Option(
    "output",
    "choice",
    "a video's output: heatmap or side (H.264 MP4), depth (16-bit FFV1 in Matroska)",
    "heatmap",
    VIDEO_OUTPUTS,
)
SCALE = Option(
    "scale",
    "choice",
    "a video's colour range: one for the clip, a running one, or per frame (flickers)",
    "clip",
    SCALES,
)
MAX_SIDE = Option(
    "max_side",
    "whole",
    "a video's frames are downscaled to this longer side (pixels) before the model",
    None,
    low=MIN_FRAME_SIDE,
)

VIEW = (FOV, NEAR, FAR, GRID_SIDE)
PREDICT = (OUTPUT, FORMAT, COLORMAP, *VIEW)  # /predict and the predict command
PHOTO_JOB = (OUTPUT, FORMAT, COLORMAP)  # /jobs with photos
VIDEO = (VIDEO_OUTPUT, COLORMAP, SCALE, MAX_SIDE)  # /jobs with a video, the video command
JOB_NAMES = tuple(dict.fromkeys(o.name for o in (*PHOTO_JOB, *VIDEO)))


def parse(
    given: Mapping[str, Sequence[str]], accepted: Sequence[Option], also: Sequence[str] = ()
) -> dict[str, Any]:
    """The values of ``given`` (each name's list of raw values, from a query, a form or a job
    record) that are given: unknown names (unless in ``also``) and repeated ones are refused."""
    by_name = {option.name: option for option in accepted}
    unknown = sorted(set(given) - set(by_name) - set(also))
    if unknown:
        names = ", ".join(dict.fromkeys([*by_name, *also]))
        raise BadParameter(f"unknown parameter {', '.join(unknown)}; accepted: {names}")
    values: dict[str, Any] = {}
    for name, raws in given.items():
        if name not in by_name:
            continue
        if len(raws) > 1:
            raise BadParameter(f"{name} is given {len(raws)} times; send it once")
        if raws and raws[0].strip():
            values[name] = by_name[name].parse(raws[0])
    return values


def photo_options(
    values: Mapping[str, Any], default_colormap: str, accepted: Sequence[Option] = PREDICT
) -> dict[str, Any]:
    """The rules between a photo's options: ``format`` follows ``output``, the 3D options go
    with a 3D output only. Returns every option of ``accepted`` with its default filled in."""
    output = values.get("output", OUTPUT.default)
    kind = KINDS[output]
    fmt = values.get("format", kind.default_format)
    if fmt not in kind.formats:
        raise BadParameter(f"format must be one of {', '.join(kind.formats)}; got {fmt!r}")
    view = [o.name for o in VIEW if o.name in values]
    if view and not kind.geometry:
        raise BadParameter(
            f"{', '.join(view)} only apply to output={' or '.join(THREE_D)}; "
            f"output={output} takes {', '.join(o.name for o in PHOTO_JOB)}"
        )
    settled = {o.name: values.get(o.name, o.default) for o in accepted}
    settled.update(output=output, format=fmt, colormap=values.get("colormap", default_colormap))
    if kind.geometry and "near" in settled:
        near, far = settled["near"], settled["far"]
        if not near < far:
            raise BadParameter(f"near must be less than far; got near={near:g}, far={far:g}")
    return settled


def video_accepted(most_frame_side: int) -> tuple[Option, ...]:
    """The video options, ``max_side`` bounded by the longest frame side a video may have."""
    bounded = replace(
        MAX_SIDE, high=most_frame_side, meaning=f"{MAX_SIDE.meaning} (MIDAS_VIDEO_MAX_SIDE at most)"
    )
    return tuple(bounded if option is MAX_SIDE else option for option in VIDEO)


def video_options(values: Mapping[str, Any], default_colormap: str) -> dict[str, Any]:
    """The rules between a video's options: ``output=depth`` is quantised with one range for
    the whole clip, so it needs ``scale=clip``."""
    settled = {o.name: values.get(o.name, o.default) for o in VIDEO}
    settled["colormap"] = values.get("colormap", default_colormap)
    if settled["output"] == "depth" and settled["scale"] != "clip":
        raise BadParameter(
            "output=depth is quantised with one range for the whole clip: use scale=clip"
        )
    return settled


def job_options(
    given: Mapping[str, Sequence[str]], kind: str, default_colormap: str, most_frame_side: int
) -> dict[str, Any]:
    """The options of a /jobs submission of ``kind`` (photos or video), as its record keeps them."""
    video = video_accepted(most_frame_side)
    names = set(given)
    if kind == "photos":
        if names & {"scale", "max_side"}:
            raise BadParameter("scale and max_side apply to a video, not to photos")
        values = parse(given, PHOTO_JOB, also=[o.name for o in video])
        return photo_options(values, default_colormap, PHOTO_JOB)
    if "format" in names:
        raise BadParameter("format applies to photos; a video's output decides its container")
    return video_options(parse(given, video, also=["format"]), default_colormap)


def add_arguments(parser: argparse.ArgumentParser, accepted: Sequence[Option]) -> None:
    """One flag per option (``--grid-side``); :func:`given_arguments` parses them as the web
    parses its query, so a bad value is the same one-line refusal."""
    for option in accepted:
        default = "from the output" if option.name == "format" else option.default
        choices = f"; one of {', '.join(option.choices)}" if option.choices else ""
        parser.add_argument(
            option.flag,
            dest=option.name,
            default=None,
            metavar=option.name.upper(),
            help=f"{option.meaning} (default: {default}{choices})",
        )


def given_arguments(args: argparse.Namespace, accepted: Sequence[Option]) -> dict[str, Any]:
    """The parsed values of the flags a command line gave; BadParameter names the flag."""
    values = {}
    for option in accepted:
        raw = getattr(args, option.name)
        if raw is None:
            continue
        try:
            values[option.name] = option.parse(str(raw))
        except BadParameter as exc:
            raise BadParameter(f"{option.flag}: {exc.message}") from None
    return values
