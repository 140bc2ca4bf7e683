"""Segment everything: masks for a whole image from a grid of point prompts.

The fully automatic stage of SAM's data engine, with the parameters and
defaults of Meta's ``SamAutomaticMaskGenerator``. For each crop (the full
image, then optional crop layers) the image is embedded once and a grid of
single-point prompts is decoded in batches. Candidates are filtered by
predicted IoU on the raw scores first; only the survivors are upscaled, a
bounded number at a time, to compute the stability score at the image's
resolution (the same numbers as upscaling everything) and to threshold,
box and RLE-encode them. So no more than ``upscale_pixel_budget`` logit
pixels are held at full resolution at once, whatever the image size.
Duplicates are removed by box NMS within each crop and across crops
(preferring masks from smaller crops).

Output records follow SA-1B: ``segmentation`` (COCO RLE), ``area`` (pixels),
``bbox`` (``[x, y, w, h]`` integer pixels, inclusive extent as in SA-1B:
``w = x2 - x1`` of the tight box's pixel indices), ``predicted_iou``,
``stability_score``, ``point_coords`` (``[[x, y]]`` original pixels) and
``crop_box`` (``[x, y, w, h]``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torchvision.ops import batched_nms

from backend.api.errors import InvalidInput
from backend.api.segment_everything import generator_defaults
from backend.formats.images import check_rgb_pixels
from backend.formats.mask_codecs import from_coco_rle, to_coco_rle
from backend.inference.crops import CropBox, boxes_touching_crop_edge, crop_boxes
from backend.inference.families import predictor_for
from backend.inference.mask_ops import (
    MASK_THRESHOLD,
    above_threshold,
    count_true,
    masks_to_boxes_xyxy,
    stability_score,
)
from backend.inference.mask_regions import remove_small_regions, require_opencv
from backend.inference.point_grids import layer_point_grids
from backend.model.mask_decoder import DecodedCandidates


class CandidatePredictor(Protocol):
    """What the generator needs of a predictor (:class:`SamPredictor`, ``Sam2Predictor``)."""

    image_size: int

    @property
    def device(self) -> torch.device:
        """Where the network runs."""

    @property
    def original_size(self) -> tuple[int, int]:
        """``(H, W)`` of the current image."""

    def set_image(self, image: np.ndarray) -> None:
        """Encode ``HxWx3`` uint8 RGB and make it the current image."""

    def reset_image(self) -> None:
        """Forget the current image."""

    def predict_candidates_above(
        self, point_coords: torch.Tensor, point_labels: torch.Tensor, min_iou: float | None
    ) -> DecodedCandidates:
        """Multimask candidates of ``BxNx2`` point prompts with predicted IoU above ``min_iou``."""

    def upscale_logits(self, low_res: torch.Tensor) -> torch.Tensor:
        """``BxKxLxL`` low-res logits -> ``BxKxHxW`` at the current image's size."""


#: Default bound on logit pixels (float32) upscaled at once: 128 MiB.
DEFAULT_UPSCALE_PIXEL_BUDGET = 2**25

_DEFAULTS = generator_defaults()
"""Each shared parameter's default, from its one definition (the filter thresholds: Meta's)."""

Checkpoint = Callable[[], None]
"""Called between slices of the work (a crop's encoding, a point batch, an
upscaled chunk, one mask's RLE); a model server runs waiting requests there,
and stops the generator by raising."""


def _no_checkpoint() -> None:
    """Run to the end without pausing."""


@dataclass
class _Candidates:
    """Masks kept so far, one entry per mask, in the original image frame.

    Attributes:
        rles: COCO RLEs at the original image size.
        areas: Mask areas in pixels.
        boxes: ``Nx4`` int64 XYXY boxes (inclusive pixel indices).
        iou: ``N`` float32 predicted IoU.
        stability: ``N`` float32 stability scores.
        points: ``Nx2`` float64 ``(x, y)`` prompt points.
        crops: The crop each mask came from.
    """

    rles: list[dict[str, Any]] = field(default_factory=list)
    areas: list[int] = field(default_factory=list)
    boxes: list[torch.Tensor] = field(default_factory=list)
    iou: list[torch.Tensor] = field(default_factory=list)
    stability: list[torch.Tensor] = field(default_factory=list)
    points: list[np.ndarray] = field(default_factory=list)
    crops: list[CropBox] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rles)

    def extend(self, other: _Candidates) -> None:
        """Append all masks of ``other``."""
        for name in ("rles", "areas", "boxes", "iou", "stability", "points", "crops"):
            getattr(self, name).extend(getattr(other, name))

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(boxes Nx4 int64, iou N, stability N)`` as tensors."""
        if not self.rles:
            return torch.zeros(0, 4, dtype=torch.int64), torch.zeros(0), torch.zeros(0)
        return torch.stack(self.boxes), torch.stack(self.iou), torch.stack(self.stability)

    def select(self, keep: torch.Tensor) -> _Candidates:
        """The masks at indices ``keep`` (1-D int tensor), in that order."""
        out = _Candidates()
        for i in keep.tolist():
            out.rles.append(self.rles[i])
            out.areas.append(self.areas[i])
            out.boxes.append(self.boxes[i])
            out.iou.append(self.iou[i])
            out.stability.append(self.stability[i])
            out.points.append(self.points[i])
            out.crops.append(self.crops[i])
        return out


class AutomaskGenerator:
    """Generates all masks of an image with a SAM model.

    The keyword parameters shared with the HTTP API and ``sam-annotate`` take
    their defaults and meanings from
    :class:`backend.api.segment_everything.SegmentEverythingParams` (the
    filter thresholds default to Meta's). The generator itself accepts any
    meaningful value: the API's upper bounds limit a request's work, not what
    a library caller may ask for.

    Args:
        model: A network of any family in eval mode (:class:`backend.model.Sam`,
            SAM 2.1's ``Sam2``).
        points_per_side: Grid points along each side of the image (total
            ``points_per_side**2``); ``None`` when ``point_grids`` is given.
        points_per_batch: Point prompts decoded together.
        pred_iou_thresh: Keep masks whose predicted IoU is above this (0 keeps all).
        stability_score_thresh: Keep masks whose stability score is at least
            this (0 keeps all non-empty masks).
        stability_score_offset: Logit offset of the two thresholds compared by
            the stability score.
        box_nms_thresh: Box IoU above which a mask is a duplicate within a crop.
        crop_n_layers: Crop layers below the full image; layer ``i`` has
            ``2**i x 2**i`` crops.
        crop_nms_thresh: Box IoU above which a mask is a duplicate across crops.
        crop_overlap_ratio: Overlap of layer-1 crops as a fraction of the
            image's short side (scaled down in deeper layers).
        crop_n_points_downscale_factor: Points a side in layer ``i`` are
            ``points_per_side / factor**i``.
        point_grids: Explicit ``Nx2`` grids in ``[0, 1]`` ``(x, y)``, one per
            layer; exclusive with ``points_per_side``.
        min_mask_region_area: If > 0, fill holes and remove islands smaller
            than this many pixels, then rerun NMS (needs OpenCV).
        upscale_pixel_budget: Most logit pixels upscaled to full resolution
            at once (at least one mask is always allowed); bounds peak memory.
        predictor_factory: Builds the predictor that encodes crops, from the
            model; default: its family's (:func:`~backend.inference.families.predictor_for`).
            With SAM 2.1 the records are those of Meta's ``SAM2AutomaticMaskGenerator``
            (except with ``min_mask_region_area > 0``: Meta's fills holes in the logits
            with its CUDA extension, ours in the masks as for SAM 1; docs/models.md).
    """

    def __init__(
        self,
        model: Any,
        *,
        points_per_side: int | None = _DEFAULTS["points_per_side"],
        points_per_batch: int = _DEFAULTS["points_per_batch"],
        pred_iou_thresh: float = _DEFAULTS["pred_iou_thresh"],
        stability_score_thresh: float = _DEFAULTS["stability_score_thresh"],
        stability_score_offset: float = _DEFAULTS["stability_score_offset"],
        box_nms_thresh: float = _DEFAULTS["box_nms_thresh"],
        crop_n_layers: int = _DEFAULTS["crop_n_layers"],
        crop_nms_thresh: float = _DEFAULTS["crop_nms_thresh"],
        crop_overlap_ratio: float = _DEFAULTS["crop_overlap_ratio"],
        crop_n_points_downscale_factor: int = _DEFAULTS["crop_n_points_downscale_factor"],
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = _DEFAULTS["min_mask_region_area"],
        upscale_pixel_budget: int = DEFAULT_UPSCALE_PIXEL_BUDGET,
        predictor_factory: Callable[[Any], CandidatePredictor] = predictor_for,
    ) -> None:
        _check_types(
            points_per_side=points_per_side,
            points_per_batch=points_per_batch,
            pred_iou_thresh=pred_iou_thresh,
            stability_score_thresh=stability_score_thresh,
            stability_score_offset=stability_score_offset,
            box_nms_thresh=box_nms_thresh,
            crop_n_layers=crop_n_layers,
            crop_nms_thresh=crop_nms_thresh,
            crop_overlap_ratio=crop_overlap_ratio,
            crop_n_points_downscale_factor=crop_n_points_downscale_factor,
            min_mask_region_area=min_mask_region_area,
            upscale_pixel_budget=upscale_pixel_budget,
        )
        self.point_grids = _layer_grids(
            points_per_side, point_grids, crop_n_layers, crop_n_points_downscale_factor
        )
        _check_settings(
            points_per_batch=points_per_batch,
            stability_score_offset=stability_score_offset,
            thresholds={
                "pred_iou_thresh": pred_iou_thresh,
                "stability_score_thresh": stability_score_thresh,
                "box_nms_thresh": box_nms_thresh,
                "crop_nms_thresh": crop_nms_thresh,
            },
            crop_overlap_ratio=crop_overlap_ratio,
            min_mask_region_area=min_mask_region_area,
            upscale_pixel_budget=upscale_pixel_budget,
        )
        self.model = model
        self.predictor_factory = predictor_factory
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.min_mask_region_area = min_mask_region_area
        self.upscale_pixel_budget = upscale_pixel_budget

    @torch.inference_mode()
    def generate(
        self,
        image: np.ndarray,
        *,
        predictor: CandidatePredictor | None = None,
        checkpoint: Checkpoint = _no_checkpoint,
    ) -> list[dict[str, Any]]:
        """All masks of an image, as SA-1B records.

        Args:
            image: ``HxWx3`` uint8 RGB.
            predictor: Optional predictor that already holds this image's
                embedding; the full-image crop then reuses it.
            checkpoint: Called between slices of the work: before each crop
                is encoded, each point batch, each upscaled chunk and each
                mask's RLE encoding; an exception it raises stops the
                generator (see :data:`Checkpoint`).

        Returns:
            Records (see the module docstring), best first within NMS order.
        """
        check_rgb_pixels(image)
        height, width = image.shape[:2]
        if predictor is not None and predictor.original_size != (height, width):
            raise InvalidInput(
                f"the predictor holds a {predictor.original_size[1]}x{predictor.original_size[0]} image, "
                f"not this {width}x{height} one; pass the predictor of the same image or none"
            )
        crops = crop_boxes(height, width, self.crop_n_layers, self.crop_overlap_ratio)
        own = self.predictor_factory(self.model)
        found = _Candidates()
        for crop in crops:
            checkpoint()
            if crop.layer == 0 and predictor is not None:
                crop_predictor = predictor
            else:
                x1, y1, x2, y2 = crop.box
                own.set_image(np.ascontiguousarray(image[y1:y2, x1:x2]))
                crop_predictor = own
            found.extend(self._process_crop(crop_predictor, crop, height, width, checkpoint))
        own.reset_image()

        if len(crops) > 1 and len(found) > 0:
            boxes, _, _ = found.stacked()
            prefer_small = 1.0 / torch.tensor([c.area for c in found.crops], dtype=torch.float32)
            keep = batched_nms(boxes.float(), prefer_small, torch.zeros(len(found)), self.crop_nms_thresh)
            found = found.select(keep)
        if self.min_mask_region_area > 0 and len(found) > 0:
            found = self._remove_small_regions(found, checkpoint)
        return _records(found)

    def _process_crop(
        self, predictor: CandidatePredictor, crop: CropBox, height: int, width: int, checkpoint: Checkpoint
    ) -> _Candidates:
        """Decode the crop's point grid; filter, NMS, and move to the original frame."""
        crop_h, crop_w = predictor.original_size
        points = self.point_grids[crop.layer] * np.array([[crop_w, crop_h]], dtype=np.float64)
        found = _Candidates()
        for start in range(0, len(points), self.points_per_batch):
            if start:
                checkpoint()
            batch = points[start : start + self.points_per_batch]
            found.extend(self._process_batch(predictor, batch, crop, height, width, checkpoint))
        if len(found) == 0:
            return found
        boxes, iou, _ = found.stacked()
        keep = batched_nms(boxes.float(), iou, torch.zeros(len(found)), self.box_nms_thresh)
        found = found.select(keep)
        x0, y0 = crop.box[0], crop.box[1]
        found.boxes = [b + torch.tensor([x0, y0, x0, y0]) for b in found.boxes]
        found.points = [p + np.array([x0, y0], dtype=np.float64) for p in found.points]
        return found

    def _process_batch(
        self,
        predictor: CandidatePredictor,
        points: np.ndarray,
        crop: CropBox,
        height: int,
        width: int,
        checkpoint: Checkpoint,
    ) -> _Candidates:
        """Decode ``Bx2`` crop-pixel points; keep masks passing every filter (boxes in the crop frame)."""
        device = predictor.device
        coords = torch.as_tensor(points, dtype=torch.float32, device=device)[:, None, :]
        labels = torch.ones(len(points), 1, dtype=torch.int64, device=device)
        # The IoU filter runs inside the decoder, before any mask is upscaled.
        min_iou = self.pred_iou_thresh if self.pred_iou_thresh > 0.0 else None
        candidates = predictor.predict_candidates_above(coords, labels, min_iou)
        low_res, iou, point_index = candidates.low_res, candidates.iou.float(), candidates.prompt

        found = _Candidates()
        crop_h, crop_w = predictor.original_size
        per_chunk = max(1, self.upscale_pixel_budget // (predictor.image_size**2 + crop_h * crop_w))
        for start in range(0, len(low_res), per_chunk):
            checkpoint()
            chunk = slice(start, start + per_chunk)
            logits = predictor.upscale_logits(low_res[chunk, None].float())[:, 0]
            stability = stability_score(logits, MASK_THRESHOLD, self.stability_score_offset)
            masks = above_threshold(logits)
            del logits
            areas = count_true(masks)
            keep = areas > 0
            if self.stability_score_thresh > 0.0:
                keep &= stability >= self.stability_score_thresh
            boxes = masks_to_boxes_xyxy(masks)
            keep &= ~boxes_touching_crop_edge(boxes, crop, height, width)
            kept = torch.nonzero(keep).flatten()
            # Small per-mask values go to the CPU once per chunk; masks one at a time.
            kept_boxes, kept_areas = boxes[kept].cpu(), areas[kept].cpu().tolist()
            kept_iou, kept_stability = iou[chunk][kept].cpu(), stability[kept].cpu()
            kept_points = point_index[chunk][kept].cpu().tolist()
            for j, i in enumerate(kept.tolist()):
                if j:
                    checkpoint()
                found.rles.append(to_coco_rle(_uncrop_mask(masks[i].cpu().numpy(), crop, height, width)))
                found.areas.append(int(kept_areas[j]))
                found.boxes.append(kept_boxes[j])
                found.iou.append(kept_iou[j])
                found.stability.append(kept_stability[j])
                found.points.append(points[kept_points[j]])
                found.crops.append(crop)
        return found

    def _remove_small_regions(self, found: _Candidates, checkpoint: Checkpoint) -> _Candidates:
        """Fill small holes, drop small islands, and rerun NMS preferring unchanged masks."""
        changed: dict[int, tuple[dict[str, Any], int, torch.Tensor]] = {}
        boxes = []
        for i, rle in enumerate(found.rles):
            checkpoint()
            mask = from_coco_rle(rle)
            mask, holes = remove_small_regions(mask, self.min_mask_region_area, "holes")
            mask, islands = remove_small_regions(mask, self.min_mask_region_area, "islands")
            if holes or islands:
                box = masks_to_boxes_xyxy(torch.from_numpy(mask))
                changed[i] = (to_coco_rle(mask), int(mask.sum()), box)
                boxes.append(box)
            else:
                boxes.append(found.boxes[i])
        unchanged = torch.tensor([0.0 if i in changed else 1.0 for i in range(len(found))])
        nms_thresh = max(self.box_nms_thresh, self.crop_nms_thresh)
        keep = batched_nms(torch.stack(boxes).float(), unchanged, torch.zeros(len(found)), nms_thresh)
        for i, (rle, area, box) in changed.items():
            found.rles[i], found.areas[i], found.boxes[i] = rle, area, box
        return found.select(keep)


def _uncrop_mask(mask: np.ndarray, crop: CropBox, height: int, width: int) -> np.ndarray:
    """Place an ``hxw`` crop mask into an all-false ``HxW`` original-size mask."""
    x1, y1, x2, y2 = crop.box
    if (x1, y1, x2, y2) == (0, 0, width, height):
        return mask
    full = np.zeros((height, width), dtype=bool)
    full[y1:y2, x1:x2] = mask
    return full


def _check_grid(grid: np.ndarray) -> np.ndarray:
    """An ``Nx2`` grid with coordinates in ``[0, 1]``."""
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 2 or grid.shape[1] != 2 or len(grid) == 0:
        raise InvalidInput(f"each point grid must be a non-empty Nx2 array of (x, y), got shape {grid.shape}")
    if not np.isfinite(grid).all() or grid.min() < 0.0 or grid.max() > 1.0:
        raise InvalidInput("point grid coordinates are fractions of the image size: they must be in [0, 1]")
    return grid


def _layer_grids(
    points_per_side: int | None, point_grids: list[np.ndarray] | None, crop_n_layers: int, downscale: int
) -> list[np.ndarray]:
    """One ``Nx2`` point grid in ``[0, 1]`` per crop layer, from a side length or given explicitly.

    Raises:
        InvalidInput: Both or neither of ``points_per_side`` and ``point_grids``, a negative
            ``crop_n_layers``, or grids that do not fit.
    """
    if (points_per_side is None) == (point_grids is None):
        raise InvalidInput("give exactly one of points_per_side or point_grids")
    if crop_n_layers < 0:
        raise InvalidInput(f"crop_n_layers must be >= 0, got {crop_n_layers}")
    if points_per_side is not None:
        if points_per_side < 1:
            raise InvalidInput(f"points_per_side must be >= 1, got {points_per_side}")
        return layer_point_grids(points_per_side, crop_n_layers, downscale)
    grids = [_check_grid(g) for g in point_grids or []]
    if len(grids) != crop_n_layers + 1:
        raise InvalidInput(f"point_grids needs one grid per layer: {crop_n_layers + 1}, got {len(grids)}")
    return grids


def _check_types(**values: Any) -> None:
    """Refuse a setting of the wrong type by name: whole numbers (``int`` annotations) must be
    ints, the rest real numbers; bools and strings are neither.

    Raises:
        InvalidInput: The first such setting.
    """
    hints = AutomaskGenerator.__init__.__annotations__
    for name, value in values.items():
        whole = "int" in str(hints[name])
        kind = numbers.Integral if whole else numbers.Real
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            need = "a whole number" if whole else "a number"
            raise InvalidInput(f"{name} must be {need}, got {value!r}")


def _check_settings(
    *,
    points_per_batch: int,
    stability_score_offset: float,
    thresholds: dict[str, float],
    crop_overlap_ratio: float,
    min_mask_region_area: int,
    upscale_pixel_budget: int,
) -> None:
    """Refuse values the generator cannot work with (see :class:`AutomaskGenerator`).

    Raises:
        InvalidInput: The first value out of range, named; OpenCV missing
            for ``min_mask_region_area``.
    """
    if points_per_batch < 1:
        raise InvalidInput(f"points_per_batch must be >= 1, got {points_per_batch}")
    if not (stability_score_offset > 0.0 and math.isfinite(stability_score_offset)):
        raise InvalidInput(
            f"stability_score_offset must be a finite number > 0, got {stability_score_offset}"
        )
    for name, value in thresholds.items():
        if not 0.0 <= value <= 1.0:
            raise InvalidInput(f"{name} must be in [0, 1], got {value}")
    if not 0.0 <= crop_overlap_ratio < 1.0:
        raise InvalidInput(f"crop_overlap_ratio must be in [0, 1), got {crop_overlap_ratio}")
    if min_mask_region_area < 0:
        raise InvalidInput(f"min_mask_region_area must be >= 0, got {min_mask_region_area}")
    if min_mask_region_area > 0:
        require_opencv()
    if upscale_pixel_budget < 1:
        raise InvalidInput(f"upscale_pixel_budget must be >= 1, got {upscale_pixel_budget}")


def _records(found: _Candidates) -> list[dict[str, Any]]:
    """SA-1B records of the kept masks."""
    records = []
    for i in range(len(found)):
        x1, y1, x2, y2 = (int(v) for v in found.boxes[i].tolist())
        records.append(
            {
                "segmentation": found.rles[i],
                "area": found.areas[i],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "predicted_iou": float(found.iou[i]),
                "point_coords": [[float(v) for v in found.points[i]]],
                "stability_score": float(found.stability[i]),
                "crop_box": found.crops[i].xywh,
            }
        )
    return records
