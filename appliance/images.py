"""Image questions: validate a visitor's data-URL image and re-encode it small and clean.

The checks run cheapest first, so a hostile upload costs little: the data URL's length before
base64 decoding, the byte size, the magic bytes, then the pixel count read from the header by
our own parser (never Pillow's decoder), then the memory the decoded picture would take
(Pillow's header: width x height x bytes per pixel of its mode, against `max_decoded_bytes`;
a 150 KB PNG can hold 6300 x 6300 transparent pixels, 150 MB decoded), and only then a full
decode. At most DECODE_SLOTS pictures are decoded at once in the whole process, so parallel
uploads queue instead of multiplying the memory. The result is re-encoded
(JPEG q85, or PNG when there is real transparency), turned upright by its EXIF orientation,
downscaled to `max_side`, and stripped of metadata (EXIF with GPS, comments, ICC profiles).

`prepare_image` blocks (Pillow): callers on the event loop use `prepare_image_async`, which runs
it on a thread limiter of its own rather than trio's shared pool.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import trio
from PIL import Image, ImageMode, ImageOps

__all__ = [
    "ALLOWED_TYPES",
    "DECODE_LIMITER",
    "DECODE_SLOTS",
    "ImageError",
    "ImageLimits",
    "PreparedImage",
    "decoded_bytes",
    "header_size",
    "parse_data_url",
    "prepare_image",
    "prepare_image_async",
    "sniff_type",
]

ALLOWED_TYPES = ("image/jpeg", "image/png", "image/webp")
_PILLOW_FORMAT = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
JPEG_QUALITY = 85

ErrorCode = Literal[
    "bad_data_url",
    "unsupported_type",
    "too_large",
    "too_many_pixels",
    "decoded_too_large",
    "corrupt",
]

# Pictures decoded at once in this process. A decode peaks at about 2.5x its decoded size (the
# picture, the downscaling steps, allocator slack; measured: +157 MB RSS for a 64 MiB RGBA PNG),
# so two at the default budget stay near 350 MB however many visitors post at once.
DECODE_SLOTS = 2
# Every decode runs on these threads, whoever calls: the memory glibc and Pillow keep for reuse
# stays with two threads instead of spreading over every thread of trio's pool (measured: 20
# parallel 64 MiB decodes from trio's pool, one semaphore: 958 MB RSS; on this pool: 350 MB).
_decoder = ThreadPoolExecutor(max_workers=DECODE_SLOTS, thread_name_prefix="image-decode")
# prepare_image_async runs the cheap checks, and waits for a decoder, on threads of its own.
DECODE_LIMITER = trio.CapacityLimiter(DECODE_SLOTS)


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 6 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_side: int = 1024
    # Memory of the decoded picture, before downscaling: a 12 MP phone photo (JPEG, decoded at
    # half scale) takes 12 MB, a 4000 x 3000 PNG screenshot 48 MB.
    max_decoded_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_side", "max_decoded_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ImageLimits.{name} must be positive")


@dataclass(frozen=True)
class PreparedImage:
    mime: str
    width: int
    height: int
    data_url: str


class ImageError(Exception):
    """A picture we will not use; `message` is short and fit to show to the visitor."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message


_HEADER_RE = re.compile(r"data:([a-z0-9.+-]+/[a-z0-9.+-]+)((?:;[a-z0-9.+-]+=[^;,]*)*);base64")
_BASE64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_MB = 1024 * 1024


def _split_data_url(url: str) -> tuple[str, str]:
    """(mime, base64 payload) of a `data:<mime>[;k=v]*;base64,<payload>` URL; strict."""
    header, comma, payload = url.partition(",")
    m = _HEADER_RE.fullmatch(header.lower())
    if not comma or m is None:
        raise ImageError("bad_data_url", "That is not a picture in a form I can read.")
    if not payload or len(payload) % 4 or _BASE64_RE.fullmatch(payload) is None:
        raise ImageError("bad_data_url", "The picture data is damaged.")
    return m.group(1), payload


def parse_data_url(url: str) -> tuple[str, bytes]:
    """The declared MIME type and the decoded bytes of a base64 data URL; strict."""
    mime, payload = _split_data_url(url)
    try:
        return mime, base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise ImageError("bad_data_url", "The picture data is damaged.") from None


def sniff_type(data: bytes) -> str | None:
    """The image type from the magic bytes: image/jpeg, image/png or image/webp, else None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


# Other picture formats a phone or browser might send: named in the refusal.
_OTHER_FORMATS = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
)


def _other_format(data: bytes) -> str | None:
    for magic, name in _OTHER_FORMATS:
        if data.startswith(magic):
            return name
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"avif", b"msf1"):
        return "AVIF" if data[8:12] == b"avif" else "HEIC"
    return None


_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE})
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        while i < len(data) and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= len(data):
            return None
        marker = data[i]
        i += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA) or i + 2 > len(data):  # end of image / scan before a frame
            return None
        (length,) = struct.unpack(">H", data[i : i + 2])
        if marker in _JPEG_SOF:
            if length < 7 or i + 7 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 3 : i + 7])
            return width, height
        i += length
    return None


def header_size(data: bytes, mime: str) -> tuple[int, int] | None:
    """(width, height) from the file header without decoding; None if the header is broken."""
    if mime == "image/png":
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if mime == "image/jpeg":
        return _jpeg_size(data)
    if mime == "image/webp" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
            width, height = struct.unpack("<HH", data[26:30])
            return width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L" and data[20] == 0x2F:
            (bits,) = struct.unpack("<I", data[21:25])
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            width = int.from_bytes(data[24:27], "little") + 1
            height = int.from_bytes(data[27:30], "little") + 1
            return width, height
    return None


def _mb(n: int) -> str:
    return f"{n / _MB:.1f}".removesuffix(".0")


def _check_bytes(n: int, limits: ImageLimits) -> None:
    if n > limits.max_bytes:
        raise ImageError(
            "too_large",
            f"That picture is too large ({_mb(n)} MB); the limit is {_mb(limits.max_bytes)} MB.",
        )


def _too_many_pixels(width: int, height: int, limits: ImageLimits) -> ImageError:
    return ImageError(
        "too_many_pixels",
        f"That picture is too big ({width} × {height} pixels); "
        f"the limit is {limits.max_pixels / 1e6:g} megapixels.",
    )


def decoded_bytes(im: Image.Image) -> int:
    """The memory Pillow allocates to decode `im` (opened, not loaded): 1 byte a pixel for
    8-bit single-band modes, 2 or 4 for 16- and 32-bit ones, 4 for every multi-band mode
    (Pillow keeps RGB, RGBA, LA, CMYK... pixels in 32 bits). After `draft` for a JPEG."""
    mode = ImageMode.getmode(im.mode)
    per_pixel = 4 if len(mode.bands) > 1 else int(mode.typestr[-1])
    return im.width * im.height * per_pixel


def _decoded_too_large(im: Image.Image, n: int, limits: ImageLimits) -> ImageError:
    return ImageError(
        "decoded_too_large",
        f"That picture is too big to process ({im.width} × {im.height} pixels, "
        f"{_mb(n)} MB once decoded); the limit is {_mb(limits.max_decoded_bytes)} MB. "
        "Please send a smaller picture.",
    )


def _corrupt() -> ImageError:
    return ImageError("corrupt", "That picture could not be read; it may be damaged.")


def _has_alpha(im: Image.Image) -> bool:
    """Whether the picture has transparency that a JPEG would lose."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # getchannel on the picture itself where it has an A band: no full-size RGBA copy.
        alpha = (im if im.mode != "P" else im.convert("RGBA")).getchannel("A")
        low = alpha.getextrema()[0]
        return isinstance(low, (int, float)) and low < 255
    return False


def prepare_image(url: str, limits: ImageLimits) -> PreparedImage:
    """Validate and re-encode a data-URL picture; raises ImageError. Blocking (Pillow)."""
    declared, payload = _split_data_url(url)
    if declared not in ALLOWED_TYPES:
        raise ImageError(
            "unsupported_type",
            f"I can't use {declared} files; please send a JPEG, PNG or WebP picture.",
        )
    # Refuse before decoding: base64 carries 3 bytes per 4 characters.
    _check_bytes(len(payload) // 4 * 3 - payload.count("=", -2), limits)
    _, data = parse_data_url(url)
    _check_bytes(len(data), limits)

    # Trust the magic bytes over the label (a PNG sent as image/jpeg is used as a PNG).
    mime = sniff_type(data)
    if mime is None:
        other = _other_format(data)
        if other is not None:
            raise ImageError(
                "unsupported_type",
                f"I can't use {other} pictures; please send a JPEG, PNG or WebP picture.",
            )
        raise _corrupt()
    size = header_size(data, mime)
    if size is None or 0 in size:
        raise _corrupt()
    width, height = size
    # Pillow's own bomb guard warns above MAX_IMAGE_PIXELS: stay below it so it never fires.
    pillow_max = Image.MAX_IMAGE_PIXELS
    if width * height > limits.max_pixels or (
        pillow_max is not None and width * height > pillow_max
    ):
        raise _too_many_pixels(width, height, limits)

    try:
        # Image.open reads the header only; nothing is decoded before load().
        with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMAT[mime]]) as im:
            if im.width * im.height > limits.max_pixels:  # our parser and Pillow disagreed
                raise _too_many_pixels(im.width, im.height, limits)
            if mime == "image/jpeg":
                # DCT scaling while decoding: far less memory and time for big photos.
                im.draft("RGB", (limits.max_side, limits.max_side))
            need = decoded_bytes(im)
            if need > limits.max_decoded_bytes:
                raise _decoded_too_large(im, need, limits)
            return _decoder.submit(_decode_and_encode, im, limits).result()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(width, height, limits) from None
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, struct.error, EOFError):
        raise _corrupt() from None


def _decode_and_encode(im: Image.Image, limits: ImageLimits) -> PreparedImage:
    """Decode, turn upright, downscale and re-encode, with as few full-size copies as Pillow
    allows (each is the size of the whole decoded picture)."""
    im.load()
    ImageOps.exif_transpose(im, in_place=True)
    alpha = _has_alpha(im)
    target = "RGBA" if alpha else "RGB"
    out = im if im.mode == target else im.convert(target)
    out.thumbnail((limits.max_side, limits.max_side), Image.Resampling.LANCZOS)
    out.info.clear()  # no EXIF, ICC, comments or text chunks travel on
    buf = io.BytesIO()
    if alpha:
        out_mime = "image/png"
        out.save(buf, format="PNG", optimize=False)
    else:
        out_mime = "image/jpeg"
        out.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    encoded = base64.b64encode(buf.getvalue()).decode("ascii")
    return PreparedImage(
        mime=out_mime,
        width=out.width,
        height=out.height,
        data_url=f"data:{out_mime};base64,{encoded}",
    )


async def prepare_image_async(url: str, limits: ImageLimits) -> PreparedImage:
    """`prepare_image` in a worker thread of the image decoder's own limiter (DECODE_SLOTS
    at once in the whole process), never in trio's shared thread pool: a burst of uploads
    queues here and leaves the FAQ lookups and the store their threads. Raises ImageError."""
    return await trio.to_thread.run_sync(prepare_image, url, limits, limiter=DECODE_LIMITER)
