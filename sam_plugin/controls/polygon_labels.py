"""Mask -> PolygonLabels results (for configs that use polygons)."""

from __future__ import annotations

from typing import Any

import numpy as np

from backend.formats.coordinates import pixels_to_ls_percent
from backend.formats.polygons import to_polygons
from sam_plugin.controls.base import ControlConverter, new_region_id


class PolygonLabelsConverter(ControlConverter):
    """``<PolygonLabels>``: a mask is one polygon region per outer contour. Its regions are not prompts."""

    tag = "PolygonLabels"
    result_type = "polygonlabels"
    output_kind = "polygon"

    def from_mask(
        self,
        mask: np.ndarray,
        *,
        from_name: str,
        to_name: str,
        label: str | None,
        score: float,
    ) -> list[dict[str, Any]]:
        """One PolygonLabels region per outer contour of an ``HxW`` bool mask.

        Args:
            mask: ``HxW`` bool, in original-image pixels.
            from_name: The PolygonLabels control's name.
            to_name: The Image tag's name.
            label: Label value; ``None`` gives unlabelled regions.
            score: Predicted IoU of the mask (0..1).

        Returns:
            Label Studio results with ``value.points`` = ``[[x%, y%], ...]``
            (percent of the image size), contours with fewer than 3 points dropped.
        """
        height, width = mask.shape
        results = []
        for flat in to_polygons(mask):
            xy = np.asarray(flat, dtype=np.float64).reshape(-1, 2)
            if len(xy) < 3:
                continue
            points = [list(pixels_to_ls_percent(float(x), float(y), width, height)) for x, y in xy]
            results.append(
                {
                    "id": new_region_id(),
                    "from_name": from_name,
                    "to_name": to_name,
                    "type": self.result_type,
                    "original_width": int(width),
                    "original_height": int(height),
                    "image_rotation": 0,
                    "value": {"points": points, "closed": True, "polygonlabels": [label] if label else []},
                    "score": float(score),
                    "readonly": False,
                }
            )
        return results
