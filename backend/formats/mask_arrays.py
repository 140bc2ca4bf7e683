"""Checks shared by the mask codecs: what counts as a mask and as a size."""

from __future__ import annotations

from typing import Any

import numpy as np

from backend.api.errors import InvalidInput
from backend.formats.images import DEFAULT_MAX_PIXELS, check_pixel_limit


def as_mask(mask: Any) -> np.ndarray:
    """Validate a mask and return it as a C-contiguous ``HxW`` bool array.

    Args:
        mask: ``HxW`` array: bool, integers (non-zero is foreground) or
            floats holding only 0 and 1.

    Raises:
        InvalidInput: Wrong number of dimensions, empty, or non-binary floats.
    """
    arr = np.asarray(mask)
    if arr.ndim != 2 or arr.size == 0:
        raise InvalidInput(f"a mask must be a non-empty HxW array, got shape {arr.shape}")
    if arr.dtype == bool:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind in "iu":
        return arr != 0
    if arr.dtype.kind == "f" and np.isin(arr, (0.0, 1.0)).all():
        return arr == 1.0
    raise InvalidInput(
        f"a mask must be bool, integer or 0/1 float, got {arr.dtype} with other values; "
        "threshold it first (for logits: mask = logits > 0)"
    )


# --- COCO RLE -----------------------------------------------------------------------------------


def size_pair(size: Any) -> tuple[int, int]:
    """``(height, width)`` of a mask to decode, checked against the image pixel limit."""
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"mask size must be [height, width], got {size!r}") from exc
    if h <= 0 or w <= 0:
        raise InvalidInput(f"mask size must be positive, got {h}x{w}")
    check_pixel_limit(w, h, DEFAULT_MAX_PIXELS)
    return h, w
