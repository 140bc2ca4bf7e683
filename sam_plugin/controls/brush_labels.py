"""Mask <-> BrushLabels result (Label Studio brush RLE)."""

from __future__ import annotations

from typing import Any

import numpy as np

from backend.api.errors import InvalidInput
from backend.formats.mask_codecs import from_brush_rle, to_brush_rle
from sam_plugin.controls.base import ControlConverter, new_region_id


class BrushLabelsConverter(ControlConverter):
    """``<BrushLabels>``: a mask is one brush region (RLE). Its regions are not prompts."""

    tag = "BrushLabels"
    result_type = "brushlabels"
    output_kind = "brush"
    one_region_per_mask = True

    def from_mask(
        self,
        mask: np.ndarray,
        *,
        from_name: str,
        to_name: str,
        label: str | None,
        score: float,
    ) -> list[dict[str, Any]]:
        """One BrushLabels region for an ``HxW`` bool mask, with a new region id.

        Args:
            mask: ``HxW`` bool, in original-image pixels.
            from_name: The BrushLabels control's name.
            to_name: The Image tag's name.
            label: Label value to show; ``None`` gives an unlabelled region.
            score: Predicted IoU of the mask (0..1).

        Returns:
            ``[result]``: ``value.format = "rle"``, ``value.rle`` the brush RLE
            (row-major RGBA runs), ``original_width/height`` = mask size.
        """
        height, width = mask.shape
        return [
            {
                "id": new_region_id(),
                "from_name": from_name,
                "to_name": to_name,
                "type": self.result_type,
                "original_width": int(width),
                "original_height": int(height),
                "image_rotation": 0,
                "value": {
                    "format": "rle",
                    "rle": to_brush_rle(mask),
                    "brushlabels": [label] if label else [],
                },
                "score": float(score),
                "readonly": False,
            }
        ]

    def to_mask(self, result: dict[str, Any]) -> np.ndarray:
        """Decode a BrushLabels result back to an ``HxW`` bool mask (``fit()`` stores these).

        Args:
            result: A ``brushlabels`` result with ``value.rle`` and ``original_width/height``.

        Raises:
            InvalidInput: Missing size or RLE, or RLE of the wrong size.
        """
        value = result.get("value") or {}
        width, height = result.get("original_width"), result.get("original_height")
        if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
            raise InvalidInput(
                f"brush region {result.get('id', '?')} has no original_width / original_height"
            )
        if value.get("format", "rle") != "rle" or not isinstance(value.get("rle"), list):
            raise InvalidInput(
                f"brush region {result.get('id', '?')} has no value.rle (format 'rle' expected)"
            )
        return from_brush_rle(value["rle"], height, width)
