"""Where an automatic annotator clicks: the centre of a region.

The *centre* of a region is its pixel farthest from the region's boundary
(the maximum of the Euclidean distance transform, pixels outside the image
counting as outside the region). The paper's point evaluation clicks the
centre of the object first, then the centre of the largest error region:
the missed part (a positive click) or the wrongly included part (a
negative click), whichever holds the deeper centre.

Pure numpy (no scipy): the exact Euclidean distance transform is computed
in two separable passes over the region's bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CHUNK_ELEMENTS = 8_000_000


@dataclass(frozen=True)
class Click:
    """One simulated click.

    Attributes:
        x: Column of the clicked pixel (original-image pixels).
        y: Row of the clicked pixel.
        positive: True for a foreground click (label 1), False for background (0).
        depth: Distance from the click to the region's boundary, in pixels.
    """

    x: int
    y: int
    positive: bool
    depth: float


def distance_inside(region: np.ndarray) -> np.ndarray:
    """Euclidean distance from each region pixel to the nearest non-region pixel.

    Args:
        region: ``HxW`` bool.

    Returns:
        ``HxW`` float64 distances in pixels; 0 outside the region. Pixels
        beyond the image border count as outside, so a region touching the
        border is at distance 1 there.
    """
    out = np.zeros(region.shape, dtype=np.float64)
    if not region.any():
        return out
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    crop = np.pad(region[top:bottom, left:right], 1)
    out[top:bottom, left:right] = np.sqrt(_squared_distance(crop))[1:-1, 1:-1]
    return out


def _squared_distance(padded: np.ndarray) -> np.ndarray:
    """Squared distance to the nearest False pixel of an ``HxW`` bool with a False border."""
    height, width = padded.shape
    index = np.arange(height, dtype=np.float64)[:, None]
    above = np.maximum.accumulate(np.where(~padded, index, -np.inf), axis=0)
    below = np.minimum.accumulate(np.where(~padded, index, np.inf)[::-1], axis=0)[::-1]
    vertical = np.minimum(index - above, below - index)
    columns = np.arange(width, dtype=np.float64)
    offsets = (columns[:, None] - columns[None, :]) ** 2
    result = np.empty((height, width), dtype=np.float64)
    step = max(1, _CHUNK_ELEMENTS // (width * width))
    for start in range(0, height, step):
        chunk = vertical[start : start + step] ** 2
        result[start : start + step] = (chunk[:, None, :] + offsets[None]).min(axis=2)
    return result


def region_centre(region: np.ndarray) -> tuple[int, int, float] | None:
    """``(x, y, depth)`` of the deepest pixel of a region, or None when it is empty.

    Ties go to the first pixel in row-major order.
    """
    distance = distance_inside(region)
    flat = int(np.argmax(distance))
    depth = float(distance.flat[flat])
    if depth == 0.0:
        return None
    y, x = divmod(flat, region.shape[1])
    return x, y, depth


def first_click(target: np.ndarray) -> Click | None:
    """Positive click at the centre of the object (None for an empty mask)."""
    centre = region_centre(target)
    return None if centre is None else Click(x=centre[0], y=centre[1], positive=True, depth=centre[2])


def corrective_click(predicted: np.ndarray, target: np.ndarray) -> Click | None:
    """Click at the centre of the largest error region; None when the prediction is exact.

    Args:
        predicted: ``HxW`` bool current prediction.
        target: ``HxW`` bool ground truth.
    """
    missed = region_centre(target & ~predicted)
    extra = region_centre(predicted & ~target)
    if missed is not None and (extra is None or missed[2] >= extra[2]):
        return Click(x=missed[0], y=missed[1], positive=True, depth=missed[2])
    if extra is None:
        return None
    return Click(x=extra[0], y=extra[1], positive=False, depth=extra[2])
