"""Image intake: data-URL parsing, type sniffing, size/pixel limits, re-encoding."""

from __future__ import annotations

import base64
import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import trio
from PIL import Image
from trio.testing import wait_all_tasks_blocked

from appliance.images import (
    DECODE_LIMITER,
    DECODE_SLOTS,
    ImageError,
    ImageLimits,
    PreparedImage,
    decoded_bytes,
    header_size,
    parse_data_url,
    prepare_image,
    prepare_image_async,
    sniff_type,
)

REPO = Path(__file__).resolve().parent.parent

LIMITS = ImageLimits()


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **params)
    return buf.getvalue()


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def decode(url: str) -> Image.Image:
    _, data = parse_data_url(url)
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def photo(size: tuple[int, int] = (64, 48)) -> Image.Image:
    im = Image.new("RGB", size, (30, 120, 200))
    im.paste((250, 200, 0), (0, 0, size[0] // 2, size[1] // 2))
    return im


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming a size, with no pixel data (a bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )


# --------------------------------------------------------------------------- parse_data_url


def test_parse_data_url_roundtrip_and_params() -> None:
    assert parse_data_url("data:image/png;base64,aGVsbG8=") == ("image/png", b"hello")
    assert parse_data_url("DATA:IMAGE/JPEG;name=a.jpg;base64,aGk=") == ("image/jpeg", b"hi")


@pytest.mark.parametrize(
    "url",
    [
        "",
        "http://example.org/a.png",
        "data:image/png,aGVsbG8=",  # not base64
        "data:image/png;base64",  # no comma
        "data:image/png;base64,",  # empty payload
        "data:;base64,aGVsbG8=",  # no type
        "data:image/png;base64,aGVsbG8",  # bad padding
        "data:image/png;base64,aGV sbG8=",  # whitespace
        "data:image/png;base64,aGVs-G8=",  # url-safe alphabet
    ],
)
def test_parse_data_url_is_strict(url: str) -> None:
    with pytest.raises(ImageError) as info:
        parse_data_url(url)
    assert info.value.code == "bad_data_url"
    assert info.value.message


def test_sniff_type() -> None:
    assert sniff_type(encode(photo(), "JPEG")) == "image/jpeg"
    assert sniff_type(encode(photo(), "PNG")) == "image/png"
    assert sniff_type(encode(photo(), "WEBP")) == "image/webp"
    assert sniff_type(encode(photo(), "GIF")) is None
    assert sniff_type(b"") is None
    assert sniff_type(b"RIFF\x00\x00\x00\x00WAVE") is None


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("PNG", {}),
        ("JPEG", {}),
        ("JPEG", {"progressive": True}),
        ("WEBP", {}),
        ("WEBP", {"lossless": True}),
        ("WEBP", {"exif": b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00"}),  # VP8X container
    ],
)
def test_header_size_matches_pillow(fmt: str, params: dict[str, object]) -> None:
    data = encode(photo((321, 123)), fmt, **params)
    mime = sniff_type(data)
    assert mime is not None
    assert header_size(data, mime) == (321, 123)


def test_header_size_broken() -> None:
    assert header_size(b"\x89PNG\r\n\x1a\n", "image/png") is None
    assert header_size(b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg") is None
    assert header_size(b"\xff\xd8\xff\xda\x00\x02", "image/jpeg") is None  # scan before frame


# --------------------------------------------------------------------------- prepare_image


@pytest.mark.parametrize(
    ("fmt", "mime"), [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")]
)
def test_prepare_small_image_becomes_jpeg(fmt: str, mime: str) -> None:
    prepared = prepare_image(data_url(encode(photo(), fmt), mime), LIMITS)
    assert (prepared.mime, prepared.width, prepared.height) == ("image/jpeg", 64, 48)
    assert prepared.data_url.startswith("data:image/jpeg;base64,")
    im = decode(prepared.data_url)
    assert im.format == "JPEG" and im.size == (64, 48)
    r, g, b = im.getpixel((5, 5))  # type: ignore[misc]
    assert r > 200 and g > 150 and b < 60  # the yellow corner survived


def test_prepare_downscales_longest_side() -> None:
    prepared = prepare_image(data_url(encode(photo((3000, 1200)), "JPEG"), "image/jpeg"), LIMITS)
    assert (prepared.width, prepared.height) == (1024, 410)
    assert decode(prepared.data_url).size == (1024, 410)
    tall = prepare_image(
        data_url(encode(photo((200, 900)), "PNG"), "image/png"), ImageLimits(max_side=300)
    )
    assert (tall.width, tall.height) == (67, 300)


def test_prepare_keeps_transparency_as_png() -> None:
    im = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    im.paste((0, 0, 255, 255), (10, 10, 30, 30))
    prepared = prepare_image(data_url(encode(im, "PNG"), "image/png"), LIMITS)
    assert prepared.mime == "image/png"
    out = decode(prepared.data_url)
    assert out.mode == "RGBA"
    assert out.getpixel((0, 0))[3] == 0  # type: ignore[index]
    assert out.getpixel((20, 20)) == (0, 0, 255, 255)


def test_opaque_alpha_becomes_jpeg() -> None:
    im = Image.new("RGBA", (20, 20), (0, 200, 0, 255))
    assert prepare_image(data_url(encode(im, "PNG"), "image/png"), LIMITS).mime == "image/jpeg"


def test_prepare_applies_exif_orientation_and_strips_metadata() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    exif[0x010F] = "SecretCam"  # Make
    data = encode(photo((80, 40)), "JPEG", exif=exif.tobytes(), comment=b"private note")
    assert b"SecretCam" in data
    prepared = prepare_image(data_url(data, "image/jpeg"), LIMITS)
    assert (prepared.width, prepared.height) == (40, 80)
    _, out = parse_data_url(prepared.data_url)
    assert b"SecretCam" not in out and b"private note" not in out and b"Exif" not in out


def test_magic_bytes_win_over_declared_type() -> None:
    prepared = prepare_image(data_url(encode(photo(), "PNG"), "image/jpeg"), LIMITS)
    assert prepared.width == 64


@pytest.mark.parametrize("mime", ["image/gif", "image/svg+xml", "text/plain", "application/pdf"])
def test_unsupported_declared_type(mime: str) -> None:
    with pytest.raises(ImageError) as info:
        prepare_image(data_url(b"whatever", mime), LIMITS)
    assert info.value.code == "unsupported_type"
    assert mime in info.value.message


def test_gif_labelled_png_is_unsupported() -> None:
    with pytest.raises(ImageError) as info:
        prepare_image(data_url(encode(photo(), "GIF"), "image/png"), LIMITS)
    assert info.value.code == "unsupported_type"
    assert "GIF" in info.value.message


def test_non_image_bytes_are_corrupt() -> None:
    with pytest.raises(ImageError) as info:
        prepare_image(data_url(b"%PDF-1.7 not a picture", "image/png"), LIMITS)
    assert info.value.code == "corrupt"


@pytest.mark.parametrize(
    ("fmt", "mime"), [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")]
)
@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_truncated_image_is_corrupt(fmt: str, mime: str, keep: float) -> None:
    noisy = Image.effect_noise((200, 200), 80).convert("RGB")  # enough data to truncate
    data = encode(noisy, fmt)
    with pytest.raises(ImageError) as info:
        prepare_image(data_url(data[: int(len(data) * keep)], mime), LIMITS)
    assert info.value.code == "corrupt"
    assert "could not be read" in info.value.message


def test_garbled_pixel_data_is_corrupt() -> None:
    data = bytearray(encode(photo((100, 100)), "PNG"))
    data[60:80] = b"\x00" * 20  # inside the IDAT chunk: bad CRC / zlib stream
    with pytest.raises(ImageError) as info:
        prepare_image(data_url(bytes(data), "image/png"), LIMITS)
    assert info.value.code == "corrupt"


def test_too_large_is_refused_before_decoding() -> None:
    limits = ImageLimits(max_bytes=1024 * 1024)
    payload = "A" * (int(1.6 * 1024 * 1024) // 3 * 4)  # ~1.6 MB of valid base64
    with pytest.raises(ImageError) as info:
        prepare_image(f"data:image/png;base64,{payload}", limits)
    assert info.value.code == "too_large"
    assert info.value.message == "That picture is too large (1.6 MB); the limit is 1 MB."


def test_too_large_real_image() -> None:
    data = encode(Image.effect_noise((300, 300), 80).convert("RGB"), "PNG")
    limits = ImageLimits(max_bytes=len(data) - 1)
    with pytest.raises(ImageError) as info:
        prepare_image(data_url(data, "image/png"), limits)
    assert info.value.code == "too_large"


def test_decompression_bomb_header_refused_without_decoding() -> None:
    with pytest.raises(ImageError) as info:
        prepare_image(data_url(png_header_only(50_000, 50_000), "image/png"), LIMITS)
    assert info.value.code == "too_many_pixels"
    assert "50000 × 50000" in info.value.message and "40 megapixels" in info.value.message


def test_pixel_limit_on_a_real_image() -> None:
    data = encode(Image.new("L", (2000, 1000)), "PNG")  # small file, 2 megapixels
    with pytest.raises(ImageError) as info:
        prepare_image(data_url(data, "image/png"), ImageLimits(max_pixels=1_000_000))
    assert info.value.code == "too_many_pixels"
    ok = prepare_image(data_url(data, "image/png"), ImageLimits(max_pixels=2_000_000))
    assert (ok.width, ok.height) == (1024, 512)


def test_zero_sized_header_is_corrupt() -> None:
    with pytest.raises(ImageError) as info:
        prepare_image(data_url(png_header_only(0, 10), "image/png"), LIMITS)
    assert info.value.code == "corrupt"


def test_limits_validate() -> None:
    with pytest.raises(ValueError, match="max_side"):
        ImageLimits(max_side=0)


def test_crafted_jpeg_header_refused() -> None:
    data = bytearray(encode(photo((16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 30_000, 30_000)  # height, width
    assert header_size(bytes(data), "image/jpeg") == (30_000, 30_000)
    with pytest.raises(ImageError) as info:
        prepare_image(data_url(bytes(data), "image/jpeg"), LIMITS)
    assert info.value.code == "too_many_pixels"


def test_pillow_bomb_limit_caps_a_generous_configured_limit() -> None:
    # 120 megapixels: allowed by these limits, but above Pillow's own guard, which would warn.
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < 120_000_000
    limits = ImageLimits(max_pixels=10**10)
    with pytest.raises(ImageError) as info:
        prepare_image(data_url(png_header_only(12_000, 10_000), "image/png"), limits)
    assert info.value.code == "too_many_pixels"


# --------------------------------------------------------------------------- decoded-size budget


def png_rgba(width: int, height: int) -> bytes:
    """A real, fully transparent RGBA PNG, compressed row by row (never held decoded here)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    z = zlib.compressobj(9)
    row = b"\x00" + bytes(width * 4)  # filter byte + pixels
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bomb() -> str:
    data = png_rgba(6300, 6300)
    assert len(data) < 200_000  # ~150 KB on the wire ...
    assert 6300 * 6300 < LIMITS.max_pixels  # ... and under the pixel limit
    return data_url(data, "image/png")


def test_decompression_bomb_within_pixel_limit_refused_by_decoded_size(bomb: str) -> None:
    with pytest.raises(ImageError) as info:
        prepare_image(bomb, LIMITS)  # before the budget: decoded (151 MB), returned a picture
    assert info.value.code == "decoded_too_large"
    assert info.value.message == (
        "That picture is too big to process (6300 × 6300 pixels, 151.4 MB once decoded); "
        "the limit is 64 MB. Please send a smaller picture."
    )


def peak_rss_growth_mb(code: str, url: str) -> float:
    """Peak RSS growth (MB) of a fresh interpreter running `code` with the data URL `url`:
    what it allocated at its worst, Pillow's C heap included (which tracemalloc cannot see).
    VmHWM, not ru_maxrss: the latter keeps the forking parent's (pytest's) size across exec."""
    script = (
        "import sys, trio\n"
        "from appliance.images import ImageError, ImageLimits, prepare_image, "
        "prepare_image_async\n"
        "def hwm():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        "            return int(line.split()[1])\n"
        "url = sys.stdin.read()\n"
        "before = hwm()\n"
        f"{code}\n"
        "print((hwm() - before) / 1024)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        input=url,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    return float(proc.stdout.strip().splitlines()[-1])


# 20 parallel uploads through `prepare` (an awaitable using `url`); each result, as a picture's
# size or an ImageError's code, must equal `expect`.
_TWENTY_IN_PARALLEL = """
async def main():
    results = []
    async def one():
        try:
            p = await {prepare}
            results.append((p.width, p.height))
        except ImageError as exc:
            results.append(exc.code)
    async with trio.open_nursery() as n:
        for _ in range(20):
            n.start_soon(one)
    assert results == [{expect}] * 20, str(results)[:300]
trio.run(main)
"""


def test_parallel_bombs_spend_no_memory(bomb: str) -> None:
    code = _TWENTY_IN_PARALLEL.format(
        prepare="prepare_image_async(url, ImageLimits())", expect="'decoded_too_large'"
    )
    # Decoding even one would take 151 MB (before the budget, these 20: ~10 GB, 35 s).
    growth = peak_rss_growth_mb(code, bomb)
    assert growth < 40, growth


def test_parallel_decodes_are_bounded_whoever_calls() -> None:
    # 9 MiB decoded each, allowed; from trio's shared pool (as the turn code calls it today),
    # so only the decoder's own threads keep the 20 from decoding at once (~25 MB apiece).
    url = data_url(png_rgba(1536, 1536), "image/png")
    code = _TWENTY_IN_PARALLEL.format(
        prepare="trio.to_thread.run_sync(prepare_image, url, ImageLimits())",
        expect="(1024, 1024)",
    )
    growth = peak_rss_growth_mb(code, url)
    assert growth < 120, growth


async def test_prepare_image_async_uses_its_own_threads() -> None:
    url = data_url(encode(photo((1200, 900)), "PNG"), "image/png")
    default = trio.to_thread.current_default_thread_limiter()
    seen: list[tuple[int, int]] = []
    done: list[PreparedImage] = []

    async def one() -> None:
        done.append(await prepare_image_async(url, LIMITS))

    async def watch() -> None:
        await wait_all_tasks_blocked()
        seen.append((DECODE_LIMITER.borrowed_tokens, default.borrowed_tokens))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        for _ in range(5):
            nursery.start_soon(one)
    assert seen == [(DECODE_SLOTS, 0)]
    assert [(p.mime, p.width, p.height) for p in done] == [("image/jpeg", 1024, 768)] * 5


@pytest.mark.parametrize(
    ("mode", "per_pixel"), [("L", 1), ("I;16", 2), ("I", 4), ("RGB", 4), ("RGBA", 4), ("LA", 4)]
)
def test_decoded_bytes_is_what_pillow_allocates(mode: str, per_pixel: int) -> None:
    fmt = "PNG" if mode != "I" else "TIFF"
    with Image.open(io.BytesIO(encode(Image.new(mode, (30, 20)), fmt))) as im:
        assert decoded_bytes(im) == 30 * 20 * per_pixel


def test_decoded_budget_boundary_and_jpeg_draft() -> None:
    rgba = data_url(encode(Image.new("RGBA", (100, 50), (1, 2, 3, 100)), "PNG"), "image/png")
    assert prepare_image(rgba, ImageLimits(max_decoded_bytes=100 * 50 * 4)).mime == "image/png"
    with pytest.raises(ImageError) as info:
        prepare_image(rgba, ImageLimits(max_decoded_bytes=100 * 50 * 4 - 1))
    assert info.value.code == "decoded_too_large"
    # A JPEG decodes at 1/2 here (DCT scaling towards max_side): 4 MB, not 16 MB.
    jpeg = data_url(encode(photo((2048, 2048)), "JPEG"), "image/jpeg")
    ok = prepare_image(jpeg, ImageLimits(max_decoded_bytes=4 * 1024 * 1024))
    assert (ok.width, ok.height) == (1024, 1024)
    with pytest.raises(ImageError):
        prepare_image(jpeg, ImageLimits(max_side=2048, max_decoded_bytes=4 * 1024 * 1024))
    with pytest.raises(ValueError, match="max_decoded_bytes"):
        ImageLimits(max_decoded_bytes=0)
