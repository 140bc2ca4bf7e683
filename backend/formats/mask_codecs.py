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

from backend.errors import InvalidInput
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
            runs = [int(c) for c in counts]
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
    if any(c < 0 for c in runs) or sum(runs) != h * w:
        raise InvalidInput(f"COCO RLE counts do not add up to size {h}x{w} = {h * w} pixels")
    rle = (
        coco_mask.frPyObjects({"size": [h, w], "counts": runs}, h, w)
        if isinstance(counts, list)
        else {"size": [h, w], "counts": counts}
    )
    return np.ascontiguousarray(coco_mask.decode(rle).astype(bool))


def _parse_coco_counts(counts: bytes) -> list[int]:
    """Run lengths of a compressed COCO counts string (pycocotools' ``rleFrString``)."""
    runs: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise InvalidInput("COCO RLE counts string ends in the middle of a number")
            c = counts[p] - 48
            if not 0 <= c < 64:
                raise InvalidInput(f"COCO RLE counts contain an invalid character {chr(counts[p])!r}")
            if k > 12:  # pycocotools keeps 64-bit counts; longer numbers are garbage (and slow to build)
                raise InvalidInput("COCO RLE counts contain an impossibly long number")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
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
    except (ValueError, TypeError, IndexError) as exc:
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
