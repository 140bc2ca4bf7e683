"""Image bytes -> pixels: the one place where images are decoded.

Every client (Label Studio plugin, widget, CLI, server) gets its pixels from
:func:`decode_image` / :func:`load_image`, so all of them see the same
``HxWx3`` uint8 RGB array and therefore the same :func:`compute_image_id`.

Decisions, stated once:

* **EXIF orientation** is applied here (``PIL.ImageOps.exif_transpose``) and
  nowhere else; the returned pixels are upright, as a photo viewer shows them.
* **Transparency** is composited on white (what a browser shows on a white
  page), not dropped: dropping alpha reveals arbitrary colours under fully
  transparent pixels.
* **High bit depth**: 16-bit grey (``I;16``, ``I``) is scaled from 0..65535 to
  0..255; float (``F``) images are min-max scaled; 16-bit RGB PNGs are
  reduced to 8 bits by Pillow itself.
* **Memory**: pixels are decoded into one buffer and converted a band of rows
  at a time (:mod:`backend.formats.lean_decode`): about 4 bytes per pixel at
  the peak, never a float64 copy of the image. Decodes reserve that memory in
  the process's :data:`backend.memory_budget.DECODE_BUDGET` first, and wait
  while other decodes hold it.
* **Truncated files** are refused: Pillow's own check, plus JPEG files too
  short for the size their header announces (:mod:`backend.formats.jpeg_frame`).
* **Animated / multi-page** files (GIF, WebP, TIFF, MPO): the first frame.
* **Only** JPEG (MPO, the multi-picture JPEG phones write, included), PNG, WebP,
  TIFF, BMP and GIF are opened; Pillow's other plugins (EPS runs Ghostscript,
  for one) are never reached from untrusted bytes.
* **Pixel limit**: width x height is read from the header and checked before
  any pixel is decoded. Pillow's own bomb guard (an error above
  ``2 * PIL.Image.MAX_IMAGE_PIXELS``, about 179 MP by default) is turned into
  the same :class:`PayloadTooLarge`. Its *warning* (above ~89 MP) is left
  alone: with the default 50 MP limit such an image is rejected anyway, and
  muting warnings per call is not thread-safe.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from backend.api.errors import InvalidImage, InvalidInput, PayloadTooLarge, ServiceUnavailable
from backend.formats.jpeg_frame import check_jpeg_complete
from backend.formats.lean_decode import decode_rgb, peak_bytes
from backend.memory_budget import DECODE_BUDGET

SUPPORTED_FORMATS = ("JPEG", "PNG", "WebP", "TIFF", "BMP", "GIF")
_PIL_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF")
DEFAULT_MAX_PIXELS = 50_000_000
_SUPPORTED = ", ".join(SUPPORTED_FORMATS)


def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open image bytes lazily (header only) and check the pixel limit.

    Args:
        data: Encoded image file contents.
        max_pixels: Largest accepted ``width * height``.

    Returns:
        A lazily loaded ``PIL.Image.Image`` positioned on its first frame.

    Raises:
        InvalidImage: Empty, unrecognised or unsupported data.
        PayloadTooLarge: The header announces more than ``max_pixels`` pixels.
    """
    if not data:
        raise InvalidImage(f"empty image data: send the bytes of a {_SUPPORTED} file")
    try:
        img = Image.open(io.BytesIO(data), formats=_PIL_FORMATS)
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"image refused as a decompression bomb: {exc}") from exc
    except Exception as exc:  # Pillow raises many types on hostile headers; all mean "not an image"
        raise InvalidImage(f"cannot identify the image ({exc}); supported formats: {_SUPPORTED}") from exc
    check_pixel_limit(img.width, img.height, max_pixels)
    return img


def check_pixel_limit(width: int, height: int, max_pixels: int) -> None:
    """Raise :class:`PayloadTooLarge` (or :class:`InvalidImage` for an empty size).

    Args:
        width: Image width in pixels.
        height: Image height in pixels.
        max_pixels: Largest accepted ``width * height``.
    """
    if width <= 0 or height <= 0:
        raise InvalidImage(f"image has an empty size {width}x{height}")
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} = {width * height / 1e6:.1f} megapixels, above the limit of "
            f"{max_pixels / 1e6:.1f} megapixels; downscale it before sending"
        )


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode image file bytes to upright RGB pixels.

    Args:
        data: Contents of a JPEG, PNG, WebP, TIFF, BMP or GIF file.
        max_pixels: Largest accepted ``width * height``, checked from the
            header before decoding.

    Returns:
        ``HxWx3`` uint8 RGB array, EXIF orientation applied, C-contiguous.

    Raises:
        InvalidImage: Empty, truncated, corrupt or unsupported data.
        PayloadTooLarge: More than ``max_pixels`` pixels.
    """
    data = bytes(data)
    img = open_image(data, max_pixels=max_pixels)
    if img.format in ("JPEG", "MPO"):
        check_jpeg_complete(data)
    with DECODE_BUDGET.reserve(peak_bytes(img)):
        try:
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            return decode_rgb(img, band_to_rgb)
        except Image.DecompressionBombError as exc:
            raise PayloadTooLarge(f"image refused as a decompression bomb: {exc}") from exc
        except MemoryError as exc:
            raise ServiceUnavailable("not enough memory to decode the image now; retry later") from exc
        except Exception as exc:  # truncated / corrupt streams raise OSError, ValueError, SyntaxError, ...
            raise InvalidImage(
                f"cannot decode the {img.format} image ({exc}); the file may be truncated or corrupt. "
                f"Supported formats: {_SUPPORTED}"
            ) from exc


def load_image(source: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Pixels from a path, bytes, a file object, a PIL image or a numpy array.

    Args:
        source: ``str`` / ``os.PathLike`` path; ``bytes`` / ``bytearray`` /
            ``memoryview`` of an image file; a binary file object; a
            ``PIL.Image.Image`` (EXIF orientation applied if still present);
            or a uint8 array ``HxWx3`` (RGB) or ``HxW`` (grey).
        max_pixels: Largest accepted ``width * height``.

    Returns:
        ``HxWx3`` uint8 RGB array, C-contiguous.

    Raises:
        InvalidInput: Missing file, wrong array shape or dtype, unknown type.
        InvalidImage: Undecodable image data.
        PayloadTooLarge: More than ``max_pixels`` pixels.
    """
    if isinstance(source, (str, os.PathLike)):
        if isinstance(source, str) and source.lower().startswith(("http://", "https://")):
            raise InvalidInput(
                f"{source} is a URL: images are read from files, bytes, arrays or PIL images here; "
                "download it first (e.g. requests.get(url).content)"
            )
        path = Path(source).expanduser()
        if not path.is_file():
            raise InvalidInput(f"no image file at {path}")
        return decode_image(path.read_bytes(), max_pixels=max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_image(bytes(source), max_pixels=max_pixels)
    if hasattr(source, "read"):
        return decode_image(source.read(), max_pixels=max_pixels)
    if isinstance(source, Image.Image):
        check_pixel_limit(source.width, source.height, max_pixels)
        return _to_rgb_array(source)
    if isinstance(source, np.ndarray):
        return _validate_array(source, max_pixels)
    raise InvalidInput(
        f"cannot load an image from {type(source).__name__}: give a path, image bytes, "
        "a PIL image or a uint8 numpy array (HxWx3 RGB or HxW grey)"
    )


def compute_image_id(pixels: np.ndarray) -> str:
    """Identity of decoded pixels: SHA-256 hex of shape and bytes.

    The same picture gets the same id whichever way it arrived (JPEG bytes,
    PNG bytes of the same pixels, a numpy array), so every client shares one
    embedding-cache entry.

    Args:
        pixels: ``HxWx3`` uint8 RGB array (as returned by :func:`load_image`).

    Returns:
        64 lowercase hex digits.
    """
    pixels = _validate_array(pixels, max_pixels=None)
    digest = hashlib.sha256("x".join(map(str, pixels.shape)).encode() + b":")
    digest.update(pixels.data.cast("B"))
    return digest.hexdigest()


def encode_png(pixels: np.ndarray, *, compress_level: int = 6) -> bytes:
    """Lossless PNG bytes of a uint8 image.

    Args:
        pixels: uint8 ``HxW`` (grey), ``HxWx3`` (RGB) or ``HxWx4`` (RGBA).
        compress_level: zlib level 0 (fastest) .. 9 (smallest).

    Returns:
        The PNG file contents.
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (3, 4))):
        raise InvalidInput(
            f"encode_png needs a uint8 HxW, HxWx3 or HxWx4 array, got {pixels.dtype} {pixels.shape}"
        )
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


RESIZE_BAND_PIXELS = 1 << 20
"""Source pixels resized at once by :func:`resize_rgb`."""


def resize_rgb(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``HxWx3`` uint8 pixels to ``size = (width, height)``, equal to Pillow's.

    ``Image.fromarray(pixels).resize(size, BILINEAR)`` first copies the whole
    image into Pillow's memory (4 bytes a pixel). Pillow resizes in two
    passes, rows then columns, each rounded to 8 bits; here the row pass runs
    on bands of rows, so only the intermediate (``height x new width``) is
    held, and the result is the same to the bit.

    Args:
        pixels: ``HxWx3`` uint8 RGB.
        size: ``(width, height)`` of the result.

    Returns:
        ``height x width x 3`` uint8 RGB.
    """
    height, width = pixels.shape[:2]
    new_w, new_h = size
    if width == new_w:
        return np.array(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))
    rows = max(1, RESIZE_BAND_PIXELS // width)
    wide = np.empty((height, new_w, 3), dtype=np.uint8)
    for y0 in range(0, height, rows):
        band = Image.fromarray(np.ascontiguousarray(pixels[y0 : y0 + rows]))
        wide[y0 : y0 + rows] = np.asarray(band.resize((new_w, band.height), Image.Resampling.BILINEAR))
    if height == new_h:
        return wide
    return np.array(Image.fromarray(wide).resize(size, Image.Resampling.BILINEAR))


def check_rgb_pixels(image: Any) -> np.ndarray:
    """Return ``image`` if it is a non-empty ``HxWx3`` uint8 RGB array, else raise :class:`InvalidInput`.

    For functions that take already-decoded pixels (the model's entry points);
    :func:`load_image` converts other inputs.
    """
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InvalidInput(
            f"image must be an HxWx3 uint8 RGB array, got {type(image).__name__} "
            f"{getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}; load files with backend.formats.images.load_image"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInput(f"image size must be positive, got {image.shape[1]}x{image.shape[0]}")
    return image


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """First frame, EXIF-upright, as ``HxWx3`` uint8 RGB (a caller's PIL image; see the module docstring)."""
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    return np.ascontiguousarray(band_to_rgb(ImageOps.exif_transpose(img), None))


def band_to_rgb(img: Image.Image, scale: tuple[float, float] | None) -> np.ndarray:
    """Pixels of ``img`` (a whole image or a band of rows) as ``hxwx3`` uint8 RGB, EXIF not applied.

    Args:
        img: Any Pillow mode.
        scale: ``(lo, hi)`` of the whole image for float (``F``) images, so
            every band is scaled alike; ``None``: this image's own range.
    """
    mode = img.mode
    if mode in ("F", "I") or mode.startswith("I;16"):
        arr = np.asarray(img, dtype=np.float64)  # one band: small
        if mode == "F":
            lo, hi = scale if scale is not None else (float(np.nanmin(arr)), float(np.nanmax(arr)))
            arr = (np.nan_to_num(arr, nan=lo) - lo) * (255.0 / (hi - lo) if hi > lo else 0.0)
        else:
            arr = arr * (255.0 / 65535.0)
        grey = np.clip(arr + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"), dtype=np.uint8)


def _validate_array(pixels: Any, max_pixels: int | None) -> np.ndarray:
    """Check a caller's array (``HxWx3`` or ``HxW`` uint8) and return it as ``HxWx3``."""
    if not isinstance(pixels, np.ndarray):
        raise InvalidInput(f"expected a numpy array of pixels, got {type(pixels).__name__}")
    if pixels.dtype != np.uint8:
        raise InvalidInput(
            f"image array must be uint8 (0..255), got {pixels.dtype}; "
            "convert with np.clip(a, 0, 255).astype(np.uint8) if the values are 0..255"
        )
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    elif pixels.ndim != 3 or pixels.shape[2] != 3:
        raise InvalidInput(f"image array must be HxWx3 (RGB) or HxW (grey), got shape {pixels.shape}")
    if max_pixels is not None:
        check_pixel_limit(pixels.shape[1], pixels.shape[0], max_pixels)
    elif pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise InvalidInput(f"image array is empty: shape {pixels.shape}")
    return np.ascontiguousarray(pixels)
