"""Regular grids of point prompts for segment-everything.

Grids are in normalised image coordinates: ``(x, y)`` in ``[0, 1]``, origin
top-left, x to the right. Multiply by ``(width, height)`` of an image (or
crop) to get pixels.
"""

from __future__ import annotations

import numpy as np

from backend.api.errors import InvalidInput


def point_grid(points_per_side: int) -> np.ndarray:
    """Points at the centres of a ``points_per_side`` x ``points_per_side`` tiling.

    Args:
        points_per_side: Points along each side (>= 1).

    Returns:
        ``Nx2`` float64 ``(x, y)`` in ``[0, 1]``, N = points_per_side**2, x
        varying fastest (row by row, top to bottom).
    """
    if points_per_side < 1:
        raise InvalidInput(f"points_per_side must be >= 1, got {points_per_side}")
    offset = 1.0 / (2 * points_per_side)
    along = np.linspace(offset, 1.0 - offset, points_per_side)
    xs = np.tile(along[None, :], (points_per_side, 1))
    ys = np.tile(along[:, None], (1, points_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def layer_point_grids(points_per_side: int, crop_n_layers: int, downscale_factor: int) -> list[np.ndarray]:
    """One grid per crop layer; layer ``i`` has ``points_per_side / downscale_factor**i`` points a side.

    Args:
        points_per_side: Points a side on the full image (layer 0).
        crop_n_layers: Number of crop layers below the full image.
        downscale_factor: Division of the points a side per deeper layer (>= 1).

    Returns:
        ``crop_n_layers + 1`` arrays of shape ``Nx2`` (see :func:`point_grid`).
    """
    if downscale_factor < 1:
        raise InvalidInput(f"crop_n_points_downscale_factor must be >= 1, got {downscale_factor}")
    grids = []
    for layer in range(crop_n_layers + 1):
        per_side = int(points_per_side / downscale_factor**layer)
        if per_side < 1:
            raise InvalidInput(
                f"crop layer {layer} would get no points ({points_per_side} / {downscale_factor}**{layer} < 1); "
                "raise points_per_side or lower crop_n_layers / crop_n_points_downscale_factor"
            )
        grids.append(point_grid(per_side))
    return grids
