"""The memory-lean decoder gives the same pixels as decoding in Pillow's memory, for every mode and turn."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from backend.api.errors import InvalidImage
from backend.formats import lean_decode
from backend.formats.images import _to_rgb_array, decode_image
from backend.formats.jpeg_frame import check_jpeg_complete, read_frame

RNG = np.random.default_rng(7)
H, W = 37, 53


def _save(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _rgb() -> Image.Image:
    return Image.fromarray(RNG.integers(0, 256, (H, W, 3), dtype=np.uint8))


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _cases() -> dict[str, bytes]:
    rgb = _rgb()
    rgba = Image.fromarray(RNG.integers(0, 256, (H, W, 4), dtype=np.uint8), "RGBA")
    grey16 = Image.fromarray(RNG.integers(0, 65536, (H, W), dtype=np.uint16))
    floats = RNG.normal(size=(H, W)).astype(np.float32)
    floats[3, 4] = np.nan
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    cases = {
        "jpeg_rgb": _save(rgb, "JPEG", quality=90),
        "jpeg_grey": _save(rgb.convert("L"), "JPEG"),
        "jpeg_cmyk": _save(rgb.convert("CMYK"), "JPEG"),
        "jpeg_progressive": _save(rgb, "JPEG", progressive=True),
        "png_rgb": _save(rgb, "PNG"),
        "png_rgba": _save(rgba, "PNG"),
        "png_grey": _save(rgb.convert("L"), "PNG"),
        "png_la": _save(rgba.convert("LA"), "PNG"),
        "png_bilevel": _save(rgb.convert("1"), "PNG"),
        "png_palette": _save(palette, "PNG"),
        "png_palette_transparent": _save(palette, "PNG", transparency=3),
        "png_grey16": _save(grey16, "PNG"),
        "tiff_float": _save(Image.fromarray(floats, "F"), "TIFF", compression="tiff_adobe_deflate"),
        "tiff_grey16": _save(grey16, "TIFF", compression="tiff_adobe_deflate"),
        "tiff_int32": _save(Image.fromarray(RNG.integers(-5, 70000, (H, W)).astype(np.int32), "I"), "TIFF"),
        "tiff_rgb": _save(rgb, "TIFF"),
        "tiff_cmyk": _save(rgb.convert("CMYK"), "TIFF"),
        "bmp": _save(rgb, "BMP"),
        "webp": _save(rgb, "WEBP", lossless=True),
        "webp_rgba": _save(rgba, "WEBP", lossless=True),
        "gif": _save(palette, "GIF", transparency=5),
    }
    for turn in range(1, 9):
        cases[f"jpeg_exif_{turn}"] = _save(rgb, "JPEG", exif=_exif(turn))
        cases[f"png_grey_exif_{turn}"] = _save(rgb.convert("L"), "PNG", exif=_exif(turn))
        cases[f"png_rgba_exif_{turn}"] = _save(rgba, "PNG", exif=_exif(turn))
    return cases


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("band_bytes", [257, lean_decode.BAND_BYTES])
def test_lean_decoding_equals_decoding_in_pillows_memory(name, band_bytes, monkeypatch):
    monkeypatch.setattr(lean_decode, "BAND_BYTES", band_bytes)
    expected = _to_rgb_array(Image.open(io.BytesIO(CASES[name])))
    got = decode_image(CASES[name])
    assert got.dtype == np.uint8 and got.flags.c_contiguous
    assert got.base is None or got.base.nbytes == got.nbytes  # no larger buffer kept alive behind it
    np.testing.assert_array_equal(got, expected)


def test_peak_bytes_estimates_four_bytes_a_pixel_for_colour_and_more_for_turned_colour():
    plain = Image.open(io.BytesIO(CASES["jpeg_rgb"]))
    turned = Image.open(io.BytesIO(CASES["jpeg_exif_6"]))
    grey16 = Image.open(io.BytesIO(CASES["png_grey16"]))
    assert lean_decode.peak_bytes(plain) == 4 * H * W
    assert lean_decode.peak_bytes(turned) == 6 * H * W
    assert lean_decode.peak_bytes(grey16) == 5 * H * W


def _jpeg_cut_after_header(width: int, height: int, keep: int) -> bytes:
    """A real JPEG's header for ``width x height``, ``keep`` bytes of its scan, then an end-of-image marker."""
    data = _save(Image.new("RGB", (64, 64), (10, 200, 30)), "JPEG")
    sof = data.index(b"\xff\xc0")
    patched = data[: sof + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[sof + 9 :]
    scan = patched.index(b"\xff\xda")
    scan_start = scan + 2 + int.from_bytes(patched[scan + 2 : scan + 4], "big")
    return patched[: scan_start + keep] + b"\xff\xd9"


def test_a_693_byte_jpeg_announcing_7000x7000_is_refused_as_truncated():
    data = _jpeg_cut_after_header(7000, 7000, 0)
    data = data[:-2] + b"\x00" * (693 - len(data)) + b"\xff\xd9"
    assert len(data) == 693
    frame = read_frame(data)
    assert frame is not None and (frame.width, frame.height) == (7000, 7000)
    with pytest.raises(InvalidImage, match="truncated"):
        decode_image(data)


def test_small_complete_jpegs_pass_the_truncation_check():
    for size in ((1, 1), (8, 8), (640, 480)):
        flat = _save(Image.new("RGB", size, (120, 120, 120)), "JPEG", quality=10)
        check_jpeg_complete(flat)
        assert decode_image(flat).shape == (size[1], size[0], 3)


def test_arithmetic_coded_jpeg_is_refused_with_a_message():
    data = _save(_rgb(), "JPEG")
    sof = data.index(b"\xff\xc0")
    arithmetic = data[: sof + 1] + b"\xc9" + data[sof + 2 :]
    with pytest.raises(InvalidImage, match="arithmetic"):
        decode_image(arithmetic)


@pytest.mark.parametrize(
    ("height", "width", "size"),
    [
        (700, 500, (128, 91)),
        (37, 53, (20, 14)),
        (300, 300, (300, 100)),
        (100, 1000, (1024, 102)),
        (5, 5, (10, 10)),
    ],
)
def test_resize_rgb_equals_pillows_bilinear_resize(height, width, size, monkeypatch):
    from backend.formats import images

    monkeypatch.setattr(images, "RESIZE_BAND_PIXELS", 1000)  # many bands
    pixels = RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(images.resize_rgb(pixels, size), expected)
