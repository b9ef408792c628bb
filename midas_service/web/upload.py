"""Reading one /predict request: the image bytes and the validated options."""

from __future__ import annotations

from flask import Request

from midas_service import options
from midas_service.errors import BadParameter, MissingImage, UnsupportedMediaType
from midas_service.images.outputs import RenderOptions

RAW_BODY_TYPES = ("application/octet-stream",)


def given(request: Request) -> dict[str, list[str]]:
    """Each option name of the query and the form with its raw values, for options.parse."""
    names = dict.fromkeys([*request.args, *request.form])
    return {name: request.args.getlist(name) + request.form.getlist(name) for name in names}


def read_options(request: Request, default_colormap: str) -> RenderOptions:
    """The /predict options, declared in ``midas_service.options``: unknown, repeated or
    out-of-range ones are refused, and so are the 3D ones with an output that has no use."""
    values = options.photo_options(options.parse(given(request), options.PREDICT), default_colormap)
    return RenderOptions(**values)


def read_colormap(request: Request, default: str) -> str:
    """The ``colormap`` option alone (the page's form), validated as /predict validates it."""
    raw = {"colormap": given(request).get("colormap", [])}
    return options.parse(raw, (options.COLORMAP,)).get("colormap", default)


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
