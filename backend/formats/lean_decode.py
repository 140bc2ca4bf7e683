"""Decode an opened image into ``HxWx3`` uint8 RGB with about 4 bytes per pixel at the peak.

Pillow keeps decoded pixels in its own memory (4 bytes a pixel for colour,
float and 32-bit modes) and converting that to a numpy array the usual way
costs several full-size copies more (``tobytes``, float64 scaling, an RGBA
composite): 10 to 28 bytes per pixel. Here:

1. The file is decoded into a numpy buffer that Pillow writes through
   (``Image.core.map_buffer``), so the pixels exist once.
2. They are converted to RGB a band of rows at a time, with the conversions
   of :func:`band_to_rgb` (the same arithmetic as before, so image ids do not
   change). Where Pillow used 3 or 4 bytes a pixel the RGB rows are written
   over the buffer itself, which is then shrunk to 3 bytes a pixel; for 1- and
   2-byte modes (grey, palette, 16-bit) a new RGB array is filled.
3. EXIF orientation is applied while filling the new array, or by one copy of
   the RGB array when the rows were converted in place.

Peak above the encoded bytes, per pixel: 4 (colour, RGBA, CMYK, float, 32-bit
integer), 4 (grey, palette), 5 (16-bit), 6 (colour turned by EXIF). GIF
frames and anything Pillow decodes into memory of its own (it replaces the
buffer) take Pillow's memory plus the RGB array instead; WebP adds its own
decoded frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

BAND_BYTES = 1024 * 1024
"""Source bytes converted at once."""
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_BUFFERED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "TIFF", "BMP", "WEBP"})
_BUFFERED_MODES = frozenset(
    {"RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LA", "L", "P", "1", "I;16", "I;16L", "I;16B", "I", "F"}
)
_RAW_MODES = {"YCbCr": "YCbCrX", "1": "L"}
"""How a band of the buffer is read where Pillow's memory layout differs from the mode's name."""
"""Modes decoded into a numpy buffer (others, such as ``PA``, in Pillow's memory)."""
_FLIPS: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: a.transpose(1, 0, 2)[:, ::-1],
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: a.transpose(1, 0, 2)[::-1],
}
"""EXIF orientation -> the view of an ``HxWxC`` array that shows it upright (``ImageOps.exif_transpose``)."""
_INVERSE = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}


def pixel_bytes(mode: str) -> int:
    """Bytes a pixel of ``mode`` takes in Pillow's memory."""
    return _PIXEL_BYTES.get(mode, 4)


def peak_bytes(img: Image.Image) -> int:
    """About how many bytes decoding ``img`` with :func:`decode_rgb` costs at its peak."""
    pixels = img.width * img.height
    source = pixel_bytes(img.mode)
    if source < 3 or not _buffered(img):
        return pixels * (source + 3)
    turned = "exif" in img.info and orientation(img) != 1  # in that order: PNG's getexif() loads
    return pixels * (6 if turned else 4)


def _buffered(img: Image.Image) -> bool:
    return (img.format or "").upper() in _BUFFERED_FORMATS and img.mode in _BUFFERED_MODES


def orientation(img: Image.Image) -> int:
    """EXIF orientation 1..8 (1 when absent or unusable)."""
    try:
        value = img.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block: show the pixels as stored
        return 1
    return value if value in _FLIPS else 1


def decode_rgb(img: Image.Image, convert: Callable[[Image.Image, Any], np.ndarray]) -> np.ndarray:
    """Load ``img`` (opened, not yet loaded, on its first frame) as upright ``HxWx3`` uint8 RGB.

    Args:
        img: The image as :func:`PIL.Image.open` returns it.
        convert: ``convert(band_image, scale)`` -> ``hxWx3`` uint8 RGB of one
            band of rows (:func:`backend.formats.images.band_to_rgb`); ``scale``
            is the whole image's ``(lo, hi)`` for float images, else ``None``.

    Returns:
        C-contiguous ``HxWx3`` uint8 array, EXIF orientation applied.
    """
    owned = _decode_into_buffer(img)
    turn = orientation(img)
    width, height, mode = img.width, img.height, img.mode
    scale = _float_range(img, owned.array if owned else None) if mode == "F" else None
    if owned is not None:
        img.im = Image.core.fill("L", (1, 1), 0)  # Pillow lets go of the buffer, so it can shrink
    if owned is not None and pixel_bytes(mode) == 2:  # 16-bit grey: to 8 bits in place first
        _grey_in_place(owned.array, width, height, mode, convert)
        owned.shrink(height * width)
        mode = "L"
    if owned is None or pixel_bytes(mode) < 3:
        return _fill_new_array(img, owned.array if owned else None, mode, convert, scale, turn)
    _convert_in_place(owned.array, width, height, mode, convert, scale)
    owned.shrink(height * width * 3)
    rgb = owned.take().reshape(height, width, 3)
    return rgb if turn == 1 else np.ascontiguousarray(_FLIPS[turn](rgb))


class OwnedBuffer:
    """A flat uint8 buffer that only this object refers to between calls, so it can shrink in place."""

    def __init__(self, nbytes: int) -> None:
        self.array: np.ndarray = np.empty(nbytes, dtype=np.uint8)

    def shrink(self, nbytes: int) -> None:
        """Keep the first ``nbytes``; the rest goes back to the system (realloc).

        Copies instead when something else still refers to the buffer (numpy
        checks the references).
        """
        array = self.array
        del self.array
        try:
            array.resize(nbytes, refcheck=True)
        except ValueError:
            array = array[:nbytes].copy()
        self.array = array

    def take(self) -> np.ndarray:
        """The buffer, handed over to the caller."""
        array = self.array
        del self.array
        return array


def _decode_into_buffer(img: Image.Image) -> OwnedBuffer | None:
    """Decode into a numpy buffer Pillow writes through; ``None`` where Pillow keeps its own memory."""
    if not _buffered(img):
        img.load()
        return None
    size = pixel_bytes(img.mode)
    owned = OwnedBuffer(img.width * img.height * size)
    try:
        mapped = Image.core.map_buffer(owned.array, img.size, "raw", 0, (img.mode, img.width * size, 1))
    except Exception:  # a mode Pillow cannot map: it decodes into its own memory
        img.load()
        return None
    img.im = mapped
    img.load()
    if img.im is not mapped:  # the plugin replaced the image memory while loading
        return None
    return owned


def _rows_per_band(width: int, nbytes: int) -> int:
    return max(1, BAND_BYTES // max(1, width * nbytes))


def _band_rgb(
    buffer: np.ndarray,
    mode: str,
    width: int,
    rows: tuple[int, int],
    convert: Callable[[Image.Image, Any], np.ndarray],
    scale: Any,
    palette_source: Image.Image | None = None,
) -> np.ndarray:
    """Rows ``y0:y1`` of the buffer as a new ``hxWx3`` uint8 RGB array."""
    y0, y1 = rows
    size = pixel_bytes(mode)
    data = buffer[y0 * width * size : y1 * width * size]
    if mode == "RGB":  # Pillow's RGB is RGBX in memory
        return data.reshape(y1 - y0, width, 4)[:, :, :3].copy()
    if mode == "LA":  # L in the first byte of four, A in the last
        grey_alpha = np.ascontiguousarray(data.reshape(y1 - y0, width, 4)[:, :, ::3])
        return convert(Image.fromarray(grey_alpha, "LA"), scale)
    view_mode = "L" if mode == "1" else mode  # "1" is one byte, 0 or 255, a pixel in memory
    raw_mode = _RAW_MODES.get(mode, mode)
    band = Image.frombuffer(view_mode, (width, y1 - y0), data, "raw", raw_mode, width * size, 1)
    if palette_source is not None and palette_source.palette is not None:
        band.putpalette(palette_source.palette.palette, rawmode=palette_source.palette.mode)
        if "transparency" in palette_source.info:
            band.info["transparency"] = palette_source.info["transparency"]
    return convert(band, scale)


def _float_range(img: Image.Image, buffer: np.ndarray | None) -> tuple[float, float]:
    """Smallest and largest value of a float image (NaN ignored), read band by band."""
    lo, hi = np.inf, -np.inf
    for band in _float_bands(img, buffer):
        finite = band[~np.isnan(band)]
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    return (lo, hi) if lo <= hi else (0.0, 0.0)


def _float_bands(img: Image.Image, buffer: np.ndarray | None) -> Any:
    rows = _rows_per_band(img.width, 4)
    for y0 in range(0, img.height, rows):
        y1 = min(img.height, y0 + rows)
        if buffer is not None:
            yield buffer[y0 * img.width * 4 : y1 * img.width * 4].view(np.float32)
        else:
            yield np.asarray(img.crop((0, y0, img.width, y1)), dtype=np.float32).ravel()


def _convert_in_place(
    buffer: np.ndarray,
    width: int,
    height: int,
    mode: str,
    convert: Callable[[Image.Image, Any], np.ndarray],
    scale: Any,
) -> None:
    """RGB rows written over the start of the buffer (3 <= its bytes a pixel)."""
    rows = _rows_per_band(width, pixel_bytes(mode))
    for y0 in range(0, height, rows):
        y1 = min(height, y0 + rows)
        rgb = _band_rgb(buffer, mode, width, (y0, y1), convert, scale)  # a copy: safe to write over
        buffer[y0 * width * 3 : y1 * width * 3] = rgb.reshape(-1)


def _grey_in_place(
    buffer: np.ndarray, width: int, height: int, mode: str, convert: Callable[[Image.Image, Any], np.ndarray]
) -> None:
    """8-bit grey rows (one byte a pixel) written over the start of a 16-bit grey buffer."""
    rows = _rows_per_band(width, 2)
    for y0 in range(0, height, rows):
        y1 = min(height, y0 + rows)
        grey = _band_rgb(buffer, mode, width, (y0, y1), convert, None)[:, :, 0]
        buffer[y0 * width : y1 * width] = grey.reshape(-1)


def _fill_new_array(
    img: Image.Image,
    buffer: np.ndarray | None,
    mode: str,
    convert: Callable[[Image.Image, Any], np.ndarray],
    scale: Any,
    turn: int,
) -> np.ndarray:
    """A new RGB array, filled band by band in its upright layout (``mode``: the buffer's)."""
    width, height = img.width, img.height
    upright = (width, height) if turn in (5, 6, 7, 8) else (height, width)
    out = np.empty((*upright, 3), dtype=np.uint8)
    stored = _FLIPS[_INVERSE[turn]](out)  # ``out`` seen in the file's row order
    rows = _rows_per_band(width, pixel_bytes(mode))
    palette_source = img if mode == "P" else None
    for y0 in range(0, height, rows):
        y1 = min(height, y0 + rows)
        if buffer is not None:
            stored[y0:y1] = _band_rgb(buffer, mode, width, (y0, y1), convert, scale, palette_source)
        else:
            stored[y0:y1] = convert(img.crop((0, y0, width, y1)), scale)
    return out
