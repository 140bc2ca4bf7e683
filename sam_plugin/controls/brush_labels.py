"""Mask -> BrushLabels result (Label Studio brush RLE)."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from backend.api.errors import InvalidInput
from backend.formats.mask_codecs import from_brush_rle, to_brush_rle

RESULT_TYPE = "brushlabels"


def new_region_id() -> str:
    """A fresh 10-character region id, as Label Studio's own ids look."""
    return uuid.uuid4().hex[:10]


def mask_to_brush_result(
    mask: np.ndarray,
    *,
    from_name: str,
    to_name: str,
    label: str | None,
    score: float,
    region_id: str | None = None,
) -> dict[str, Any]:
    """One BrushLabels region for an ``HxW`` bool mask.

    Args:
        mask: ``HxW`` bool, in original-image pixels.
        from_name: The BrushLabels control's name.
        to_name: The Image tag's name.
        label: Label value to show; ``None`` gives an unlabelled region.
        score: Predicted IoU of the mask (0..1).
        region_id: Region id; a new one when ``None``.

    Returns:
        A Label Studio result: ``value.format = "rle"``, ``value.rle`` the
        brush RLE (row-major RGBA runs), ``original_width/height`` = mask size.
    """
    height, width = mask.shape
    return {
        "id": region_id or new_region_id(),
        "from_name": from_name,
        "to_name": to_name,
        "type": RESULT_TYPE,
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": {"format": "rle", "rle": to_brush_rle(mask), "brushlabels": [label] if label else []},
        "score": float(score),
        "readonly": False,
    }


def brush_result_to_mask(item: dict[str, Any]) -> np.ndarray:
    """Decode a BrushLabels result back to an ``HxW`` bool mask.

    Args:
        item: A ``brushlabels`` result with ``value.rle`` and ``original_width/height``.

    Raises:
        InvalidInput: Missing size or RLE, or RLE of the wrong size.
    """
    value = item.get("value") or {}
    width, height = item.get("original_width"), item.get("original_height")
    if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
        raise InvalidInput(f"brush region {item.get('id', '?')} has no original_width / original_height")
    if value.get("format", "rle") != "rle" or not isinstance(value.get("rle"), list):
        raise InvalidInput(f"brush region {item.get('id', '?')} has no value.rle (format 'rle' expected)")
    return from_brush_rle(value["rle"], height, width)
