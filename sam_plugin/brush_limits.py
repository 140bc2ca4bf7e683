"""Size checks of an annotation's brush regions, made before any of them is decoded.

Decoding Label Studio's brush RLE runs in Python (label-studio-sdk) and costs
time in proportion to the RLE's length and memory in proportion to the size
the region announces (4 bytes a pixel). The webhook receives these regions
from whoever calls it, so their sizes are checked first: a 15 MB RLE took
11 s of CPU before this check.
"""

from __future__ import annotations

from typing import Any

from backend.api.errors import InvalidInput, PayloadTooLarge
from backend.formats.images import DEFAULT_MAX_PIXELS

MAX_RLE_BYTES = 4 * 1024 * 1024
"""Most brush RLE values in one annotation, all regions together (decoding them takes about 3 s)."""
MAX_MASK_PIXELS = 1 << 30
"""Most mask pixels of one annotation, all regions together (one byte each once decoded)."""


def check_brush_sizes(regions: list[dict[str, Any]], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse brush regions whose size or RLE length is out of bounds, without decoding them.

    Args:
        regions: ``brushlabels`` results of one annotation.
        max_pixels: Largest image size a region may announce.

    Raises:
        InvalidInput: A region without a size or an RLE list, a size above
            ``max_pixels``, or an RLE whose header counts other than
            ``width * height * 4`` values.
        PayloadTooLarge: More than :data:`MAX_RLE_BYTES` RLE values or
            :data:`MAX_MASK_PIXELS` mask pixels in all.
    """
    rle_bytes = mask_pixels = 0
    for item in regions:
        name = item.get("id", "?")
        width, height = item.get("original_width"), item.get("original_height")
        if type(width) is not int or type(height) is not int or width <= 0 or height <= 0:  # not bools either
            raise InvalidInput(f"brush region {name} has no original_width / original_height")
        if width * height > max_pixels:
            raise InvalidInput(
                f"brush region {name} announces {width}x{height} pixels, above the image limit"
            )
        rle = (item.get("value") or {}).get("rle")
        if not isinstance(rle, list) or len(rle) < 8:
            raise InvalidInput(f"brush region {name} has no value.rle (format 'rle' expected)")
        try:
            count = int.from_bytes(bytes(int(v) for v in rle[:4]), "big")
        except (TypeError, ValueError):
            raise InvalidInput(f"brush region {name}: value.rle must be a list of bytes 0..255") from None
        if count != width * height * 4:
            raise InvalidInput(
                f"brush region {name}: its RLE encodes {count} values, not {width}x{height}x4 = {width * height * 4}"
            )
        rle_bytes += len(rle)
        mask_pixels += width * height
    if rle_bytes > MAX_RLE_BYTES or mask_pixels > MAX_MASK_PIXELS:
        raise PayloadTooLarge(
            f"the annotation's brush regions hold {rle_bytes} RLE values for {mask_pixels} mask pixels; "
            f"at most {MAX_RLE_BYTES} values and {MAX_MASK_PIXELS} pixels are decoded per annotation"
        )
