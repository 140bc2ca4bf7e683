"""Removal of small islands and small holes from binary masks.

Connected components use 8-connectivity (OpenCV's
``connectedComponentsWithStats``, imported when first needed).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from backend.api.errors import ServiceUnavailable


def require_opencv() -> Any:
    """Import OpenCV or say how to install it.

    Returns:
        The ``cv2`` module.
    """
    try:
        import cv2
    except ImportError as error:
        raise ServiceUnavailable(
            "min_mask_region_area > 0 needs OpenCV: pip install opencv-python-headless "
            "(or use min_mask_region_area=0)"
        ) from error
    return cv2


def remove_small_regions(
    mask: np.ndarray, min_area: float, mode: Literal["holes", "islands"]
) -> tuple[np.ndarray, bool]:
    """Fill holes or drop islands smaller than ``min_area`` pixels.

    Holes are 8-connected regions of background (including regions that touch
    the image border). When every island is small, the largest one is kept,
    so a non-empty mask never becomes empty.

    Args:
        mask: ``HxW`` bool.
        min_area: Regions with fewer pixels than this are changed.
        mode: ``"holes"`` fills small background regions, ``"islands"``
            removes small foreground regions.

    Returns:
        ``(mask HxW bool, changed)``; ``mask`` is the input itself when
        nothing changed.
    """
    cv2 = require_opencv()
    fill_holes = mode == "holes"
    working = (mask ^ fill_holes).astype(np.uint8)
    n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(working, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = sizes < min_area
    if not small.any():
        return mask, False
    if fill_holes:
        # Label 0 is the mask itself; small background components join it.
        keep = np.concatenate([[True], small])
    else:
        keep = np.concatenate([[False], ~small])
        if not keep.any():
            keep[int(np.argmax(sizes)) + 1] = True
    return keep[labels], True
