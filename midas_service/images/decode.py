"""Untrusted bytes in, a validated float32 RGB image in [0, 1] out.

Checks run cheapest first: size of the upload, the format's magic bytes, the size from the
header (before any pixel is decoded), then the decode itself.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass

import numpy as np

# OpenCV's own decode guard; ours below is stricter and gives a clearer error.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 28))

import cv2
import simplejpeg
from PIL import Image

from midas_service.errors import (
    EmptyImage,
    ImageError,
    ImageTooLarge,
    UndecodableImage,
    UnsupportedImage,
)

__all__ = ["EmptyImage", "ImageError", "ImageTooLarge", "UndecodableImage", "UnsupportedImage"]

MAGIC_BYTES = {
    b"\xff\xd8\xff": "jpeg",
    b"\x89PNG\r\n\x1a\n": "png",
    b"BM": "bmp",
    b"II*\x00": "tiff",
    b"MM\x00*": "tiff",
}
SUPPORTED_FORMATS = ("jpeg", "png", "webp", "bmp", "tiff")
# libpng reads (and writes) no side longer than this by default, OpenCV's other decoders stop at
# 2**20: one limit for every format keeps the rule simple and every accepted image decodable.
MAX_SIDE = 1_000_000
ROTATED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
EXIF_IFD = 0x8769
FOCAL_LENGTH_35MM = 0xA405  # FocalLengthIn35mmFilm, in the Exif IFD; 0 means unknown


def sniff_format(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, name in MAGIC_BYTES.items():
        if data.startswith(magic):
            return name
    return None


@dataclass(frozen=True)
class ImageHeader:
    """What the header says, with width and height as decoded (after EXIF orientation)."""

    format: str
    width: int
    height: int
    orientation: int = 1  # EXIF orientation; 0 when the EXIF does not parse


def _orientation(probe: Image.Image) -> int:
    """The EXIF orientation that OpenCV's decode applies: 1 without EXIF, 0 if it is malformed.

    Only EXIF already read with the header is consulted (Pillow's PNG ``getexif`` would decode
    the pixels to look further). Pillow reports TIFF sizes already oriented: 1.
    """
    exif = probe.info.get("exif")
    if not exif or probe.format == "TIFF":
        return 1
    parsed = Image.Exif()
    try:
        parsed.load(exif)
        return int(parsed.get(0x0112, 1))
    except Exception:  # any malformed EXIF
        return 0


def focal_length_35mm(data: bytes) -> float | None:
    """EXIF ``FocalLengthIn35mmFilm`` of an already checked upload, or None if it has none.

    Read from the EXIF that comes with the header, as :func:`_orientation` does; any EXIF
    that does not parse counts as none.
    """
    try:
        with Image.open(io.BytesIO(data)) as probe:
            if probe.format == "TIFF":
                exif = probe.getexif()
            else:
                raw = probe.info.get("exif")
                if not raw:
                    return None
                exif = Image.Exif()
                exif.load(raw)
            value = exif.get_ifd(EXIF_IFD).get(FOCAL_LENGTH_35MM)
            focal = float(value) if value is not None else 0.0
    except Exception:  # malformed EXIF or an odd value type: as if absent
        return None
    return focal if focal > 0 and focal == focal else None


def header_size(data: bytes, fmt: str) -> tuple[int, int, int]:
    """(width, height) as decoded and the EXIF orientation, from the header only (Pillow
    decodes no pixels here). Malformed EXIF counts as no rotation: OpenCV ignores it too, and
    the caller checks the decoded size."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                (width, height), orientation = probe.size, _orientation(probe)
    except Image.DecompressionBombError as exc:  # over 2x Pillow's limit: too large, not corrupt
        raise ImageTooLarge(f"the {fmt} header declares far too many pixels") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise UndecodableImage(f"cannot read the {fmt} header: truncated or corrupt") from exc
    if orientation in ROTATED_ORIENTATIONS:
        return height, width, orientation
    return width, height, orientation


def read_header(data: bytes, max_bytes: int, max_pixels: int) -> ImageHeader:
    """Every check that needs no pixel decoded: byte size, format, width and height."""
    if not data:
        raise EmptyImage("the upload is empty")
    if len(data) > max_bytes:
        # Not len(data): a chunked body past the limit arrives cut short at Flask's own limit.
        limit_mb = max_bytes / (1024 * 1024)
        raise ImageTooLarge(f"the upload is larger than the {limit_mb:g} MB limit ({max_bytes} B)")
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedImage(f"not a supported image; send one of {', '.join(SUPPORTED_FORMATS)}")
    width, height, orientation = header_size(data, fmt)
    if width * height > max_pixels:
        raise ImageTooLarge(f"the image is {width}x{height} pixels; the limit is {max_pixels}")
    if max(width, height) > MAX_SIDE:
        raise ImageTooLarge(
            f"the image is {width}x{height} pixels; each side is limited to {MAX_SIDE}"
        )
    if width < 1 or height < 1:
        raise UndecodableImage(f"the image header says {width}x{height}")
    return ImageHeader(fmt, width, height, orientation)


def decode_image(data: bytes, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Validate and decode an upload to (H, W, 3) float32 RGB in [0, 1].

    Grayscale becomes RGB, alpha is dropped, 16-bit is scaled by 65535, EXIF orientation is
    applied (by OpenCV's colour decode).
    """
    return decode_pixels(data, read_header(data, max_bytes, max_pixels))


def decode_pixels(data: bytes, header: ImageHeader, keep_8bit: bool = False) -> np.ndarray:
    """The decode itself, for bytes whose ``header`` :func:`read_header` already checked.

    ``keep_8bit``: an 8-bit image stays (H, W, 3) uint8 RGB, a quarter of the float32 copy
    (120 MB instead of 480 MB at 40 MP); the pipeline converts only while it resizes.
    """
    fmt = header.format
    rgb = _decode_jpeg_rgb(data) if fmt == "jpeg" and header.orientation == 1 else None
    if rgb is not None:
        return rgb if keep_8bit else np.multiply(rgb, np.float32(1.0 / 255.0), dtype=np.float32)
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    except cv2.error as exc:
        raise UndecodableImage(f"cannot decode the {fmt} image: {exc}") from exc
    if bgr is None or bgr.ndim != 3 or bgr.size == 0:
        raise UndecodableImage(f"cannot decode the {fmt} image")
    if keep_8bit and bgr.dtype == np.uint8:
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)
    return to_float_rgb(bgr)


def _decode_jpeg_rgb(data: bytes) -> np.ndarray | None:
    """An upright 8-bit JPEG straight to RGB with libjpeg-turbo (simplejpeg): the same pixels
    as OpenCV's decode, about 35 % faster and without the BGR-to-RGB pass. None for what
    OpenCV must decode (CMYK, 12-bit, anything refused here); the caller sends OpenCV every
    JPEG whose EXIF orientation is to be applied or does not parse."""
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError:
        return None


def to_float_rgb(bgr: np.ndarray) -> np.ndarray:
    """BGR of any common depth -> float32 RGB in [0, 1]."""
    if bgr.dtype == np.uint8:
        scale = 1.0 / 255.0
    elif bgr.dtype == np.uint16:
        scale = 1.0 / 65535.0
    elif bgr.dtype in (np.float32, np.float64):
        scale = 1.0
    else:
        raise UndecodableImage(f"unsupported sample type {bgr.dtype}")
    # In place: the decoded buffer is ours, and a 40 MP photo is 120 MB per 8-bit copy.
    cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)
    rgb = np.multiply(bgr, np.float32(scale), dtype=np.float32)  # one pass, one new array
    if scale == 1.0:
        np.clip(rgb, 0.0, 1.0, out=rgb)
    return rgb


def read_image_file(path: os.PathLike[str] | str, max_pixels: int = 1 << 28) -> np.ndarray:
    """The batch CLI's reader: same checks as an upload, no byte limit beyond the pixel one."""
    with open(path, "rb") as handle:
        data = handle.read()
    return decode_image(data, max_bytes=max(len(data), 1), max_pixels=max_pixels)
