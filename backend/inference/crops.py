"""Crop windows for segment-everything's crop layers.

Layer 0 is the whole image; layer ``i >= 1`` tiles the image with
``2**i x 2**i`` overlapping crops, so that small objects get a crop where
they are large enough for the model. Boxes are ``[x1, y1, x2, y2]`` integer
pixels of the original image, ``x2``/``y2`` exclusive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product

import torch

#: Distance (pixels) under which a mask box edge counts as touching a crop edge.
CROP_EDGE_TOLERANCE = 20.0


@dataclass(frozen=True)
class CropBox:
    """One crop window.

    Attributes:
        box: ``[x1, y1, x2, y2]`` in original pixels, exclusive ends.
        layer: 0 for the full image, ``i`` for the ``2**i x 2**i`` layer.
    """

    box: tuple[int, int, int, int]
    layer: int

    @property
    def area(self) -> int:
        """Area in pixels."""
        x1, y1, x2, y2 = self.box
        return (x2 - x1) * (y2 - y1)

    @property
    def xywh(self) -> list[int]:
        """``[x, y, width, height]`` (the SA-1B ``crop_box`` field)."""
        x1, y1, x2, y2 = self.box
        return [x1, y1, x2 - x1, y2 - y1]


def crop_boxes(height: int, width: int, crop_n_layers: int, overlap_ratio: float) -> list[CropBox]:
    """All crop windows of an image, the full image first.

    Args:
        height: Image height in pixels.
        width: Image width in pixels.
        crop_n_layers: Number of layers below the full image.
        overlap_ratio: Overlap of neighbouring crops in layer 1 as a fraction
            of the image's short side; deeper layers scale it down by the
            number of crops a side.

    Returns:
        ``1 + sum(4**i for i in 1..crop_n_layers)`` crops, layer by layer,
        column-major inside a layer (x outer, y inner), less any that would be
        empty (Meta's layout gives those on an image side of a few pixels,
        e.g. 1-6 pixels with two layers).
    """
    crops = [CropBox((0, 0, width, height), 0)]
    short_side = min(height, width)
    for layer in range(1, crop_n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / per_side))
        crop_w = _crop_length(width, per_side, overlap)
        crop_h = _crop_length(height, per_side, overlap)
        xs = [int((crop_w - overlap) * i) for i in range(per_side)]
        ys = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in product(xs, ys):
            x1, y1 = min(x0 + crop_w, width), min(y0 + crop_h, height)
            if x1 > x0 and y1 > y0:  # a side of a few pixels leaves deep layers empty crops
                crops.append(CropBox((x0, y0, x1, y1), layer))
    return crops


def _crop_length(length: int, n_crops: int, overlap: int) -> int:
    """Side of each of ``n_crops`` crops that cover ``length`` with ``overlap`` between neighbours."""
    return int(math.ceil((overlap * (n_crops - 1) + length) / n_crops))


def boxes_touching_crop_edge(
    boxes: torch.Tensor, crop: CropBox, height: int, width: int, *, tolerance: float = CROP_EDGE_TOLERANCE
) -> torch.Tensor:
    """Which mask boxes touch an edge of the crop that is not an edge of the image.

    Such masks are likely cut by the crop and are dropped.

    Args:
        boxes: ``Nx4`` XYXY boxes in the crop's pixels.
        crop: The crop the boxes come from.
        height: Original image height in pixels.
        width: Original image width in pixels.
        tolerance: Pixels within which an edge counts as touching.

    Returns:
        ``N`` bool.
    """
    x0, y0, _, _ = crop.box
    offset = torch.tensor([x0, y0, x0, y0], dtype=torch.float32, device=boxes.device)
    boxes = boxes.float() + offset
    crop_t = torch.tensor(crop.box, dtype=torch.float32, device=boxes.device)
    image_t = torch.tensor([0, 0, width, height], dtype=torch.float32, device=boxes.device)
    near_crop = torch.isclose(boxes, crop_t[None], atol=tolerance, rtol=0)
    near_image = torch.isclose(boxes, image_t[None], atol=tolerance, rtol=0)
    return (near_crop & ~near_image).any(dim=1)
