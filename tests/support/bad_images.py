"""A generated corpus of bad and unusual image files, with what the server must do.

Every entry is built in memory from a few bytes (the "bombs" only *announce*
huge sizes in their headers; nothing large is ever allocated), so the corpus
is cheap to build and safe to send to a server.

Each :class:`CorpusImage` says either that the image must be accepted (and the
upright width x height after EXIF orientation) or that it must be refused
(HTTP status and error code from :mod:`backend.api.errors`). Expectations assume
the default pixel limit of 50 megapixels (``DEFAULT_MAX_PIXELS``).
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

DEFAULT_MAX_PIXELS = 50_000_000


@dataclass(frozen=True)
class CorpusImage:
    """One corpus file and the expected outcome.

    Attributes:
        name: Short identifier (used as the pytest id).
        data: The file contents.
        accept: True if the server must decode it.
        width: Upright width in pixels after EXIF (accepted files only).
        height: Upright height in pixels after EXIF (accepted files only).
        status: Expected HTTP status of a refusal (refused files only).
        code: Expected ``error`` code of a refusal (refused files only).
    """

    name: str
    data: bytes
    accept: bool
    width: int = 0
    height: int = 0
    status: int = 0
    code: str = ""


def _accepted(name: str, data: bytes, width: int, height: int) -> CorpusImage:
    return CorpusImage(name=name, data=data, accept=True, width=width, height=height)


def _invalid(name: str, data: bytes) -> CorpusImage:
    return CorpusImage(name=name, data=data, accept=False, status=400, code="invalid_image")


def _too_large(name: str, data: bytes) -> CorpusImage:
    return CorpusImage(name=name, data=data, accept=False, status=413, code="payload_too_large")


def _save(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_bomb(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR announcing ``width x height`` RGB, with a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + _png_chunk(b"IEND", b"")
    )


def _png_16bit_rgb(width: int, height: int) -> bytes:
    """A 16-bit-per-channel RGB PNG written by hand (Pillow writes only 16-bit grey)."""
    rng = np.random.default_rng(16)
    values = rng.integers(0, 65536, (height, width, 3), dtype=np.uint16)
    raw = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def tiff_header_bomb(width: int, height: int) -> bytes:
    """A little-endian baseline TIFF whose IFD announces ``width x height`` grey pixels.

    The single strip points at 8 bytes of data; no pixel buffer is allocated
    unless a decoder trusts the header.
    """
    entries = [
        (256, 4, 1, width),  # ImageWidth, LONG
        (257, 4, 1, height),  # ImageLength, LONG
        (258, 3, 1, 8),  # BitsPerSample, SHORT
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # PhotometricInterpretation: BlackIsZero
        (273, 4, 1, 0),  # StripOffsets (patched below)
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, 8),  # StripByteCounts
    ]
    ifd_offset = 8
    ifd_size = 2 + 12 * len(entries) + 4
    data_offset = ifd_offset + ifd_size
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        if tag == 273:
            value = data_offset
        packed = struct.pack("<H", value) + b"\x00\x00" if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + ifd + b"\x00" * 8


def _jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Patch the SOF0/SOF2 frame header of ``jpeg`` to announce ``width x height``."""
    pos = 2
    while pos < len(jpeg) - 4:
        marker, length = jpeg[pos + 1], struct.unpack(">H", jpeg[pos + 2 : pos + 4])[0]
        if marker in (0xC0, 0xC2):
            size_at = pos + 5  # after marker (2), length (2), precision (1)
            return jpeg[:size_at] + struct.pack(">HH", height, width) + jpeg[size_at + 4 :]
        pos += 2 + length
    raise ValueError("no SOF marker found")


def _gif_with_screen(width: int, height: int) -> bytes:
    """A GIF whose logical screen and only frame announce ``width x height``."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame + b";"


def _gradient(width: int, height: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return np.dstack([yy * 255 // max(height - 1, 1), xx * 255 // max(width - 1, 1), (xx + yy) % 256]).astype(
        np.uint8
    )


def _exif_rotated_jpeg(width: int, height: int, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(Image.fromarray(_gradient(width, height)), "JPEG", quality=90, exif=exif.tobytes())


def _animated_gif(width: int, height: int) -> bytes:
    frames = [Image.new("P", (width, height), color=i * 40) for i in range(4)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


def _palette_png(width: int, height: int, *, transparency: bool) -> bytes:
    img = Image.fromarray(_gradient(width, height)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return _save(img, "PNG", transparency=0) if transparency else _save(img, "PNG")


@lru_cache(maxsize=1)
def _build() -> tuple[CorpusImage, ...]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(_gradient(48, 32))
    jpeg = _save(rgb, "JPEG", quality=90)
    png = _save(rgb, "PNG")
    noisy = Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    noisy_jpeg = _save(noisy, "JPEG", quality=90)
    noisy_png = _save(noisy, "PNG")
    rgba = np.dstack([_gradient(20, 10), np.full((10, 20), 128, np.uint8)])
    grey16 = (np.arange(12 * 9, dtype=np.uint16).reshape(9, 12) * 600).astype(np.uint16)
    return (
        # accepted: unusual but valid
        _accepted("one_by_one_png", _save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), 1, 1),
        _accepted("cmyk_jpeg", _save(Image.new("CMYK", (30, 20), (0, 128, 255, 10)), "JPEG"), 30, 20),
        _accepted("grey16_png", _save(Image.fromarray(grey16), "PNG"), 12, 9),
        _accepted("rgb16_png", _png_16bit_rgb(11, 7), 11, 7),
        _accepted("palette_png", _palette_png(25, 15, transparency=False), 25, 15),
        _accepted("palette_transparent_png", _palette_png(25, 15, transparency=True), 25, 15),
        _accepted("animated_gif", _animated_gif(16, 12), 16, 12),
        _accepted("grayscale_jpeg", _save(rgb.convert("L"), "JPEG"), 48, 32),
        _accepted("grayscale_png", _save(rgb.convert("L"), "PNG"), 48, 32),
        _accepted("rgba_png", _save(Image.fromarray(rgba, "RGBA"), "PNG"), 20, 10),
        _accepted("la_png", _save(rgb.convert("LA"), "PNG"), 48, 32),
        _accepted("exif_rotated_jpeg_6", _exif_rotated_jpeg(40, 24, 6), 24, 40),
        _accepted("exif_rotated_jpeg_3", _exif_rotated_jpeg(40, 24, 3), 40, 24),
        _accepted("webp_lossless", _save(rgb, "WEBP", lossless=True), 48, 32),
        _accepted("bmp", _save(rgb, "BMP"), 48, 32),
        _accepted("tiff", _save(rgb, "TIFF"), 48, 32),
        _accepted("tall_thin_png", _save(Image.new("RGB", (1, 300), (1, 2, 3)), "PNG"), 1, 300),
        # refused: not an image, broken, or unsupported
        _invalid("zero_bytes", b""),
        _invalid("truncated_jpeg", jpeg[: len(jpeg) // 2]),
        _invalid("truncated_png", png[: len(png) // 2]),
        _invalid("truncated_jpeg_mid_scan", noisy_jpeg[: len(noisy_jpeg) * 7 // 10]),
        _invalid("truncated_png_mid_idat", noisy_png[: len(noisy_png) * 7 // 10]),
        _invalid("png_signature_only", png[:8]),
        _invalid("jpeg_soi_only", b"\xff\xd8\xff"),
        _invalid("random_bytes", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()),
        _invalid("text_file", b"This is a text file, not an image.\nline two\n" * 20),
        _invalid("html_file", b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>"),
        _invalid("svg_file", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'),
        _invalid("eps_file", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"),
        _invalid("png_bad_crc", png[:29] + b"\x00\x00\x00\x00" + png[33:]),
        # refused: decompression bombs that only announce a huge size
        _too_large("png_header_bomb_30000", png_header_bomb(30000, 30000)),
        _too_large("tiff_header_bomb_100000", tiff_header_bomb(100000, 100000)),
        _too_large("jpeg_header_bomb_60000", _jpeg_with_size(jpeg, 60000, 60000)),
        _too_large("gif_header_bomb_65535", _gif_with_screen(65535, 65535)),
        _too_large("png_header_just_over_limit", png_header_bomb(10000, 5001)),
    )


def bad_image_corpus() -> list[CorpusImage]:
    """All corpus entries (built once per process)."""
    return list(_build())


def corpus_by_name(name: str) -> CorpusImage:
    """The corpus entry called ``name``."""
    for item in _build():
        if item.name == name:
            return item
    raise KeyError(f"no corpus image named {name!r}")
