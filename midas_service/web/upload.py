"""Reading one /predict request: the image bytes and the validated output options."""

from __future__ import annotations

import math
from dataclasses import replace

from flask import Request

from midas_service.geometry import view
from midas_service.images.outputs import KINDS, RenderOptions
from midas_service.images.visualize import COLORMAPS
from midas_service.web.errors import BadParameter, MissingImage, UnsupportedMediaType

RAW_BODY_TYPES = ("application/octet-stream",)
PARAMETERS = ("output", "format", "colormap")
ALL_PARAMETERS = PARAMETERS + view.PARAMETERS  # the 3D ones only with a 3D output


def _given(request: Request, name: str) -> str | None:
    given = request.args.getlist(name) + request.form.getlist(name)
    if len(given) > 1:
        raise BadParameter(f"{name} is given {len(given)} times; send it once")
    return given[0].strip() if given and given[0].strip() else None


def _choice(request: Request, name: str, choices: tuple[str, ...], default: str) -> str:
    value = _given(request, name) or default
    value = value.strip().lower()
    if value not in choices:
        raise BadParameter(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _number(request: Request, name: str, default: float | None) -> float | None:
    value = _given(request, name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise BadParameter(f"{name} must be a number; got {value!r}") from None
    if not math.isfinite(number):
        raise BadParameter(f"{name} must be a finite number; got {value!r}")
    return number


def _whole(request: Request, name: str, default: int) -> int:
    value = _given(request, name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise BadParameter(f"{name} must be a whole number; got {value!r}") from None


def read_options(request: Request, default_colormap: str) -> RenderOptions:
    """Validated options; unknown names are refused rather than silently ignored, and so are
    the 3D parameters with an output that has no use for them."""
    names = set(request.args) | set(request.form)
    unknown = sorted(names - set(ALL_PARAMETERS))
    if unknown:
        raise BadParameter(
            f"unknown parameter {', '.join(unknown)}; accepted: {', '.join(ALL_PARAMETERS)}"
        )
    output = _choice(request, "output", tuple(KINDS), "heatmap")
    kind = KINDS[output]
    fmt = _choice(request, "format", kind.formats, kind.default_format)
    options = RenderOptions(output, fmt, read_colormap(request, default_colormap))
    if not kind.geometry:
        irrelevant = sorted(names & set(view.PARAMETERS))
        if irrelevant:
            three_d = " or ".join(name for name, k in KINDS.items() if k.geometry)
            raise BadParameter(
                f"{', '.join(irrelevant)} only apply to output={three_d}; "
                f"output={output} takes {', '.join(PARAMETERS)}"
            )
        return options
    return read_view(request, options)


def read_view(request: Request, options: RenderOptions) -> RenderOptions:
    """The 3D parameters (fov, near, far, max_side), each checked against its range."""
    fov = _number(request, "fov", options.fov)
    near = _number(request, "near", options.near)
    far = _number(request, "far", options.far)
    max_side = _whole(request, "max_side", options.max_side)
    assert near is not None and far is not None
    try:
        view.check_view(fov, near, far, max_side)
    except view.BadView as exc:
        raise BadParameter(str(exc)) from None
    return replace(options, fov=fov, near=near, far=far, max_side=max_side)


def read_colormap(request: Request, default: str) -> str:
    """The ``colormap`` parameter, validated the same way for /predict and the upload page."""
    return _choice(request, "colormap", tuple(COLORMAPS), default)


def read_image_bytes(request: Request) -> bytes:
    """The multipart field ``image``, or the whole body for image/* and octet-stream uploads."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        uploads = request.files.getlist("image")
        if not uploads:
            raise MissingImage("send the photo in the multipart field 'image'")
        extra = sorted(set(request.files) - {"image"})
        if len(uploads) > 1 or extra:
            raise BadParameter("send exactly one file, in the multipart field 'image'")
        return uploads[0].read()
    if mimetype.startswith("image/") or mimetype in RAW_BODY_TYPES:
        return request.get_data(cache=False)
    if not mimetype and not request.content_length:
        raise MissingImage("send a photo: multipart field 'image' or an image/* request body")
    raise UnsupportedMediaType(
        f"Content-Type {mimetype or '(none)'} is not accepted; use multipart/form-data "
        "with field 'image', image/*, or application/octet-stream"
    )
