"""Reading one /predict request: the image bytes and the validated output options."""

from __future__ import annotations

from flask import Request

from midas_service.images.outputs import KINDS, RenderOptions
from midas_service.images.visualize import COLORMAPS
from midas_service.web.errors import BadParameter, MissingImage, UnsupportedMediaType

RAW_BODY_TYPES = ("application/octet-stream",)
PARAMETERS = ("output", "format", "colormap")


def _choice(request: Request, name: str, choices: tuple[str, ...], default: str) -> str:
    given = request.args.getlist(name) + request.form.getlist(name)
    if len(given) > 1:
        raise BadParameter(f"{name} is given {len(given)} times; send it once")
    value = (given[0] if given else "") or default
    value = value.strip().lower()
    if value not in choices:
        raise BadParameter(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def read_options(request: Request, default_colormap: str) -> RenderOptions:
    """Validated options; unknown names are refused rather than silently ignored."""
    unknown = sorted((set(request.args) | set(request.form)) - set(PARAMETERS))
    if unknown:
        raise BadParameter(
            f"unknown parameter {', '.join(unknown)}; accepted: {', '.join(PARAMETERS)}"
        )
    output = _choice(request, "output", tuple(KINDS), "heatmap")
    kind = KINDS[output]
    fmt = _choice(request, "format", kind.formats, kind.default_format)
    return RenderOptions(output, fmt, read_colormap(request, default_colormap))


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
