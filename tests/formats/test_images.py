"""Image decoding: formats, modes, EXIF orientation, limits, identity."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from backend.api.errors import InvalidImage, InvalidInput, PayloadTooLarge
from backend.formats.images import compute_image_id, decode_image, encode_png, load_image

RNG = np.random.default_rng(0)
PIXELS = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)  # non-square, so orientation mistakes show


def _save(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_16bit_rgb(values: np.ndarray) -> bytes:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    h, w, _ = values.shape
    raw = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that announces ``width x height`` but holds (almost) no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))


@pytest.mark.parametrize(
    ("fmt", "kwargs"),
    [("PNG", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {"lossless": True}), ("GIF", {})],
)
def test_lossless_formats_decode_to_the_saved_pixels(fmt, kwargs):
    pixels = PIXELS if fmt != "GIF" else np.repeat(PIXELS[:, :, :1], 3, axis=2)  # GIF: <= 256 colours
    out = decode_image(_save(Image.fromarray(pixels), fmt, **kwargs))
    assert out.dtype == np.uint8 and out.shape == pixels.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out, pixels)


def test_jpeg_decodes_close_to_the_saved_pixels():
    yy, xx = np.mgrid[:48, :64]
    smooth = np.dstack([yy * 5, xx * 4, np.full_like(yy, 90)]).astype(np.uint8)
    out = decode_image(_save(Image.fromarray(smooth), "JPEG", quality=95))
    assert out.shape == (48, 64, 3)
    assert np.abs(out.astype(int) - smooth).mean() < 3


EXPECTED_ORIENTATION = {
    1: lambda a: a,
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),  # rotate 90 degrees clockwise to view
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", sorted(EXPECTED_ORIENTATION))
def test_exif_orientation_is_applied(orientation):
    img = Image.fromarray(PIXELS)
    exif = img.getexif()
    exif[0x0112] = orientation
    out = decode_image(_save(img, "PNG", exif=exif.tobytes()))
    np.testing.assert_array_equal(out, EXPECTED_ORIENTATION[orientation](PIXELS))


def test_exif_orientation_is_applied_to_jpeg_and_only_once():
    img = Image.fromarray(np.kron(PIXELS, np.ones((8, 8, 1), np.uint8)))  # 40x56 blocks survive JPEG
    exif = img.getexif()
    exif[0x0112] = 6
    data = _save(img, "JPEG", quality=100, subsampling=0, exif=exif.tobytes())
    out = decode_image(data).astype(int)
    assert out.shape == (56, 40, 3)
    assert np.abs(out - np.rot90(np.asarray(img), -1)).mean() < 3
    assert np.abs(out - np.rot90(np.asarray(img), 1)).mean() > 30
    # A PIL image someone already opened: orientation applied here too, and applying twice changes nothing.
    np.testing.assert_array_equal(load_image(Image.open(io.BytesIO(data))), out)


def test_transparency_is_composited_on_white():
    rgba = np.array([[[10, 20, 30, 0], [0, 0, 0, 255], [0, 0, 0, 128], [200, 100, 50, 255]]], np.uint8)
    out = decode_image(_save(Image.fromarray(rgba, "RGBA"), "PNG"))
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[0, 1], [0, 0, 0])
    assert np.all(np.abs(out[0, 2].astype(int) - 127) <= 1)
    np.testing.assert_array_equal(out[0, 3], [200, 100, 50])


def test_grey_with_alpha_and_palette_transparency_are_composited_on_white():
    la = Image.fromarray(np.array([[[0, 0], [0, 255], [100, 255]]], np.uint8), "LA")
    np.testing.assert_array_equal(decode_image(_save(la, "PNG"))[0], [[255] * 3, [0] * 3, [100] * 3])
    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 0, 0, 0, 255, 0])
    pal.putpixel((1, 0), 1)
    out = decode_image(_save(pal, "PNG", transparency=0))
    np.testing.assert_array_equal(out[0], [[255, 255, 255], [0, 255, 0]])


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK"])
def test_other_modes_become_rgb(mode):
    img = Image.fromarray(PIXELS).convert(mode)
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    out = decode_image(_save(img, fmt))
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.asarray(img.convert("RGB")))


def test_16_bit_grey_is_scaled_to_8_bits():
    values = np.array([[0, 257, 32896, 65535]], np.uint16)
    out = decode_image(_save(Image.fromarray(values), "PNG"))
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_16_bit_rgb_keeps_the_high_byte():
    values = RNG.integers(0, 65536, (3, 4, 3)).astype(np.uint16)
    out = decode_image(_png_16bit_rgb(values))
    assert out.shape == (3, 4, 3)
    assert np.abs(out.astype(int) - (values >> 8)).max() <= 1


def test_float_tiff_is_min_max_scaled():
    values = np.array([[-2.0, 0.0, 2.0]], np.float32)
    out = decode_image(_save(Image.fromarray(values, "F"), "TIFF"))
    np.testing.assert_array_equal(out[0, :, 1], [0, 128, 255])


def test_animated_gif_gives_the_first_frame():
    frames = [Image.new("RGB", (4, 3), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    data = _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    out = decode_image(data)
    assert (out == [255, 0, 0]).all()


def test_pixel_limit_is_checked_from_the_header_before_decoding():
    # The file holds no pixel data: decoding it fails as truncated, so the size error proves the order.
    with pytest.raises(InvalidImage):
        decode_image(_png_header_only(200, 100))
    with pytest.raises(PayloadTooLarge, match="20000x4000"):
        decode_image(_png_header_only(20_000, 4_000), max_pixels=1_000_000)
    with pytest.raises(PayloadTooLarge, match="limit"):
        decode_image(_save(Image.fromarray(PIXELS), "PNG"), max_pixels=34)
    assert decode_image(_save(Image.fromarray(PIXELS), "PNG"), max_pixels=35).shape == (5, 7, 3)


def test_pillow_decompression_bomb_error_becomes_payload_too_large():
    # Above 2 * PIL.Image.MAX_IMAGE_PIXELS Pillow itself refuses, even under a generous limit of ours.
    with pytest.raises(PayloadTooLarge, match="decompression bomb"):
        decode_image(_png_header_only(100_000, 100_000), max_pixels=10**12)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"definitely not an image",
        _save(Image.fromarray(PIXELS), "PNG")[:60],
        _save(Image.fromarray(np.kron(PIXELS, np.ones((20, 20, 1), np.uint8))), "JPEG")[:400],
        b"P6\n1 1\n255\n\x00\x00\x00",  # PPM: Pillow reads it, we do not accept it
    ],
    ids=["empty", "garbage", "truncated-png", "truncated-jpeg", "unsupported-ppm"],
)
def test_bad_bytes_raise_invalid_image_naming_the_supported_formats(data):
    with pytest.raises(InvalidImage) as info:
        decode_image(data)
    assert "JPEG" in str(info.value) and "PNG" in str(info.value)


def test_load_image_accepts_paths_bytes_files_pil_and_arrays(tmp_path):
    data = _save(Image.fromarray(PIXELS), "PNG")
    path = tmp_path / "a.png"
    path.write_bytes(data)
    for source in (path, str(path), data, bytearray(data), io.BytesIO(data), Image.fromarray(PIXELS), PIXELS):
        np.testing.assert_array_equal(load_image(source), PIXELS)
    grey = PIXELS[:, :, 0]
    np.testing.assert_array_equal(load_image(grey), np.dstack([grey] * 3))


@pytest.mark.parametrize(
    "source",
    [
        PIXELS.astype(np.float32),
        PIXELS[:, :, :2],
        np.zeros((2, 2, 4), np.uint8),
        np.zeros((2, 2, 3, 1), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
        12345,
    ],
    ids=["float", "two-channels", "rgba-array", "4d", "empty", "int"],
)
def test_load_image_rejects_bad_sources(source):
    with pytest.raises(InvalidInput):
        load_image(source)


def test_load_image_reports_a_missing_file(tmp_path):
    with pytest.raises(InvalidInput, match="no image file"):
        load_image(tmp_path / "missing.jpg")


def test_load_image_applies_the_pixel_limit_to_arrays():
    with pytest.raises(PayloadTooLarge):
        load_image(PIXELS, max_pixels=10)


def test_image_id_is_the_same_for_the_same_pixels_whatever_the_source():
    png = _save(Image.fromarray(PIXELS), "PNG")
    ids = {
        compute_image_id(decode_image(png)),
        compute_image_id(PIXELS),
        compute_image_id(load_image(Image.fromarray(PIXELS))),
    }
    assert len(ids) == 1
    image_id = ids.pop()
    assert len(image_id) == 64 and int(image_id, 16) >= 0
    jpeg = _save(Image.fromarray(PIXELS), "JPEG")
    assert compute_image_id(decode_image(jpeg)) == compute_image_id(decode_image(bytes(jpeg)))


def test_image_id_changes_with_one_pixel_or_the_shape():
    changed = PIXELS.copy()
    changed[4, 6, 2] ^= 1
    assert compute_image_id(changed) != compute_image_id(PIXELS)
    flat = np.arange(2 * 6 * 3, dtype=np.uint8)
    assert compute_image_id(flat.reshape(2, 6, 3)) != compute_image_id(flat.reshape(6, 2, 3))
    assert compute_image_id(np.asfortranarray(PIXELS)) == compute_image_id(PIXELS)


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3), (5, 7, 4)])
def test_encode_png_is_lossless(shape):
    pixels = RNG.integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png(pixels)))), pixels)


def test_encode_png_rejects_other_dtypes():
    with pytest.raises(InvalidInput, match="uint8"):
        encode_png(np.zeros((2, 2, 3), np.float32))


def test_formats_modules_import_without_torch_or_label_studio():
    code = (
        "import sys, backend.formats.images, backend.formats.mask_codecs; "
        "bad = {'torch', 'label_studio_sdk', 'cv2'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
