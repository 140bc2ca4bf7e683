"""Mask codecs: the one place where ``HxW`` bool masks become bytes or JSON.

Formats (``MASK_FORMATS``):

* ``"coco_rle"``: COCO compressed RLE via pycocotools,
  ``{"size": [h, w], "counts": str}``; runs are counted **column-major**.
  Decoding also accepts ``counts`` as bytes or as a list of ints
  (uncompressed RLE).
* ``"brush_rle"``: Label Studio's brush RLE via label-studio-sdk's converter,
  a list of ints (bytes of a bit-packed run-length code) over the
  **row-major** RGBA pixels of the mask, painted pixels ``(255, 255, 255, 255)``.
  A different format from COCO RLE: the two never mix.
* ``"png"``: lossless 1-bit PNG bytes.
* ``"polygons"``: outlines as a list of flat ``[x0, y0, x1, y1, ...]`` lists
  in original-image pixels, pixel ``(row r, column c)`` covering
  ``[c, c + 1] x [r, r + 1]`` (see ``backend.formats.coordinates``).

Polygons live in :mod:`backend.formats.polygons` (traced along pixel edges,
exact round trips).

This module imports neither torch nor label-studio-sdk at import time.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

from backend.api.errors import InvalidInput
from backend.formats.images import DEFAULT_MAX_PIXELS, open_image
from backend.formats.mask_arrays import as_mask, size_pair
from backend.formats.polygons import from_polygons, to_polygons

MASK_FORMATS = ("coco_rle", "brush_rle", "png", "polygons")


def to_coco_rle(mask: Any) -> dict[str, Any]:
    """``HxW`` mask -> ``{"size": [h, w], "counts": str}`` (column-major runs)."""
    rle = coco_mask.encode(np.asfortranarray(as_mask(mask), dtype=np.uint8))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def from_coco_rle(rle: Any, height: int | None = None, width: int | None = None) -> np.ndarray:
    """COCO RLE (compressed or uncompressed) -> ``HxW`` bool mask.

    Args:
        rle: ``{"size": [h, w], "counts": str | bytes | list[int]}``.
        height: Expected height, checked when given.
        width: Expected width, checked when given.
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise InvalidInput('COCO RLE must be a dict {"size": [h, w], "counts": ...}')
    h, w = size_pair(rle["size"])
    _check_size((h, w), height, width)
    counts = rle["counts"]
    if isinstance(counts, list):
        try:
            runs = np.array([int(c) for c in counts], dtype=np.int64)
        except (TypeError, ValueError) as exc:
            raise InvalidInput("uncompressed COCO RLE counts must be a list of ints") from exc
    elif isinstance(counts, (str, bytes)):
        try:
            counts = counts.encode("ascii") if isinstance(counts, str) else counts
        except UnicodeEncodeError as exc:
            raise InvalidInput("COCO RLE counts must be ASCII") from exc
        runs = _parse_coco_counts(counts)
    else:
        raise InvalidInput("COCO RLE counts must be a string or a list of ints")
    # pycocotools returns uninitialised memory for counts that do not cover the mask: check first.
    if (runs < 0).any() or int(runs.sum()) != h * w:
        raise InvalidInput(f"COCO RLE counts do not add up to size {h}x{w} = {h * w} pixels")
    rle = (
        coco_mask.frPyObjects({"size": [h, w], "counts": runs.tolist()}, h, w)
        if isinstance(counts, list)
        else {"size": [h, w], "counts": counts}
    )
    return np.ascontiguousarray(coco_mask.decode(rle).astype(bool))


def _parse_coco_counts(counts: bytes) -> np.ndarray:
    """Run lengths of a compressed COCO counts string (pycocotools' ``rleFrString``), vectorised.

    Each number is written in 5-bit groups, least significant first, as
    characters ``48 + group`` with bit 0x20 meaning "more groups follow" and
    bit 0x10 of the last group the sign; from the fourth number on, each is a
    difference to the number two places before.

    Returns:
        ``N`` int64 run lengths.
    """
    chars = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if ((chars < 0) | (chars >= 64)).any():
        bad = counts[int(np.flatnonzero((chars < 0) | (chars >= 64))[0])]
        raise InvalidInput(f"COCO RLE counts contain an invalid character {chr(bad)!r}")
    if len(chars) == 0:
        return np.zeros(0, dtype=np.int64)
    last = (chars & 0x20) == 0  # the final group of each number
    if not last[-1]:
        raise InvalidInput("COCO RLE counts string ends in the middle of a number")
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 12:  # pycocotools keeps 64-bit counts; longer numbers are garbage
        raise InvalidInput("COCO RLE counts contain an impossibly long number")
    group = np.repeat(np.arange(len(ends)), lengths)
    shift = 5 * (np.arange(len(chars)) - starts[group])
    values = np.add.reduceat((chars & 0x1F) << shift, starts)
    negative = (chars[ends] & 0x10) != 0
    values[negative] |= -1 << (5 * lengths[negative])
    runs = values.copy()  # from index 3 on, runs[m] = values[m] + runs[m - 2]
    runs[1::2] = np.cumsum(values[1::2])
    runs[2::2] = np.cumsum(values[2::2])
    return runs


# --- Label Studio brush RLE ---------------------------------------------------------------------


def to_brush_rle(mask: Any) -> list[int]:
    """``HxW`` mask -> Label Studio brush RLE (row-major RGBA, painted = 255)."""
    from label_studio_sdk.converter.brush import mask2rle

    return [int(v) for v in mask2rle(as_mask(mask).astype(np.uint8) * 255)]


def from_brush_rle(rle: Sequence[int], height: int, width: int) -> np.ndarray:
    """Label Studio brush RLE -> ``HxW`` bool mask (painted where alpha > 0).

    Args:
        rle: The ``value.rle`` list of a ``brushlabels`` result.
        height: ``original_height`` of the result.
        width: ``original_width`` of the result.
    """
    from label_studio_sdk.converter.brush import decode_rle

    h, w = size_pair((height, width))
    try:
        data = bytes(int(v) for v in rle)
        if len(data) < 8 or int.from_bytes(data[:4], "big") != h * w * 4:
            raise ValueError("its pixel count does not match")
        flat = decode_rle(data)
    except (
        ValueError,
        TypeError,
        IndexError,
        OverflowError,
    ) as exc:  # OverflowError: runs the SDK cannot decode
        raise InvalidInput(
            f"invalid brush RLE for a {w}x{h} image ({exc}); expected a list of bytes 0..255 "
            "encoding width*height*4 RGBA values"
        ) from exc
    return np.ascontiguousarray(flat.reshape(h, w, 4)[:, :, 3] > 0)


# --- PNG ----------------------------------------------------------------------------------------


def to_png(mask: Any) -> bytes:
    """``HxW`` mask -> 1-bit PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(as_mask(mask)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def from_png(
    data: bytes, height: int | None = None, width: int | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Mask image bytes -> ``HxW`` bool mask.

    Foreground is: non-zero for 1-bit, grey, 16-bit and palette images (palette
    index 0 is background); alpha > 0 for images with a partly transparent
    alpha channel; any non-zero colour channel otherwise.

    Args:
        data: PNG bytes (any format :mod:`backend.formats.images` opens is accepted).
        height: Expected height, checked when given.
        width: Expected width, checked when given.
        max_pixels: Largest accepted ``width * height``.
    """
    img = open_image(data, max_pixels=max_pixels)
    _check_size((img.height, img.width), height, width)
    try:
        img.load()
    except Exception as exc:  # truncated / corrupt stream
        raise InvalidInput(f"cannot decode the mask image ({exc})") from exc
    arr = np.asarray(img)
    if arr.ndim == 2:
        return np.ascontiguousarray(arr != 0)
    has_alpha = img.getbands()[-1] == "A"
    if has_alpha and arr[:, :, -1].min() < 255:
        return np.ascontiguousarray(arr[:, :, -1] > 0)
    colour = arr[:, :, :-1] if has_alpha else arr
    return np.ascontiguousarray((colour != 0).any(axis=2))


# --- dispatch -----------------------------------------------------------------------------------


def encode_mask(mask: Any, fmt: str) -> Any:
    """Encode an ``HxW`` mask in one of ``MASK_FORMATS``.

    Returns:
        ``coco_rle``: dict; ``brush_rle``: list of ints; ``png``: bytes;
        ``polygons``: list of flat coordinate lists.
    """
    encoders = {"coco_rle": to_coco_rle, "brush_rle": to_brush_rle, "png": to_png, "polygons": to_polygons}
    return encoders[_check_format(fmt)](mask)


def decode_mask(data: Any, fmt: str, height: int | None = None, width: int | None = None) -> np.ndarray:
    """Decode a mask in one of ``MASK_FORMATS`` to an ``HxW`` bool array.

    Args:
        data: The encoded mask, as :func:`encode_mask` returns it.
        fmt: One of ``MASK_FORMATS``.
        height: Image height; required for ``brush_rle`` and ``polygons``,
            checked against the data for ``coco_rle`` and ``png``.
        width: Image width; same rules as ``height``.
    """
    fmt = _check_format(fmt)
    if fmt == "coco_rle":
        return from_coco_rle(data, height, width)
    if fmt == "png":
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidInput("a PNG mask must be bytes")
        return from_png(bytes(data), height, width)
    if height is None or width is None:
        raise InvalidInput(f"decoding a {fmt} mask needs the image height and width")
    if fmt == "brush_rle":
        return from_brush_rle(data, height, width)
    return from_polygons(data, height, width)


def _check_format(fmt: str) -> str:
    if fmt not in MASK_FORMATS:
        raise InvalidInput(f"unknown mask format {fmt!r}; valid formats: {', '.join(MASK_FORMATS)}")
    return fmt


def _check_size(actual: tuple[int, int], height: int | None, width: int | None) -> None:
    if (height is not None and actual[0] != height) or (width is not None and actual[1] != width):
        raise InvalidInput(f"mask is {actual[1]}x{actual[0]} (WxH) but the image is {width}x{height}")
