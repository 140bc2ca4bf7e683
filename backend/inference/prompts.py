"""Check a client's prompt against its image and turn it into a decode job.

Clients send plain lists (HTTP JSON or Python); the service must reject
anything the decoder cannot answer with an :class:`~backend.api.errors.InvalidInput`
that says how to fix it, before the request reaches the GPU queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from backend.api.errors import InvalidInput


@dataclass(frozen=True)
class CheckedPrompt:
    """A validated prompt for B objects on one image (original pixels).

    Attributes:
        points: ``Nx2`` float32 ``(x, y)`` or None.
        labels: ``N`` int64 (1 foreground, 0 background) or None.
        boxes: ``Bx4`` float32 XYXY or None; B boxes give B objects, each with
            the same points.
    """

    points: np.ndarray | None
    labels: np.ndarray | None
    boxes: np.ndarray | None

    @property
    def batch_size(self) -> int:
        """Number of objects (B)."""
        return 1 if self.boxes is None else len(self.boxes)


def check_prompt(
    *,
    width: int,
    height: int,
    points: Sequence[Sequence[float]] | np.ndarray | None,
    labels: Sequence[int] | np.ndarray | None,
    box: Sequence[float] | np.ndarray | None,
    boxes: Sequence[Sequence[float]] | np.ndarray | None,
    has_mask_input: bool,
) -> CheckedPrompt:
    """Validate a prompt on a ``width x height`` image.

    Raises:
        InvalidInput: Shapes, label count, NaN/inf, coordinates outside the
            image, inverted boxes, or no prompt at all.
    """
    coords, point_labels = _points(points, labels, width, height)
    if box is not None and boxes is not None:
        raise InvalidInput("give either box (one object) or boxes (one object each), not both")
    all_boxes = None
    if box is not None:
        one = _numbers(box, np.float64, "a box is [x1, y1, x2, y2] numbers; boxes are a list of those")
        all_boxes = _boxes(one.reshape(1, -1) if one.size == 4 else one, width, height)
    elif boxes is not None:
        all_boxes = _boxes(boxes, width, height)
    if coords is None and all_boxes is None and not has_mask_input:
        raise InvalidInput("give a prompt: points with labels, a box, boxes, mask_input or text")
    return CheckedPrompt(points=coords, labels=point_labels, boxes=all_boxes)


@dataclass(frozen=True)
class PredictorPrompt:
    """A predictor's checked numpy prompt: what ``predict`` decodes.

    Attributes:
        prompt: Points, labels and boxes in original pixels.
        masks: ``Bx1xLxL`` float32 low-res logits, or None.
        batch: Number of objects: one per box, or per mask, else 1.
    """

    prompt: CheckedPrompt
    masks: np.ndarray | None
    batch: int


def check_predictor_prompt(
    *,
    size: tuple[int, int],
    point_coords: Sequence[Sequence[float]] | np.ndarray | None,
    point_labels: Sequence[int] | np.ndarray | None,
    box: Sequence[float] | np.ndarray | None,
    mask_input: object,
    mask_side: int,
) -> PredictorPrompt:
    """Check the arguments of a predictor's ``predict`` on an image of ``size`` (height, width).

    ``box`` is one XYXY box or ``Bx4`` boxes; ``mask_input`` is ``1xLxL`` or
    ``Bx1xLxL`` logits with ``L = mask_side``, one for all boxes or one per box.

    Raises:
        InvalidInput: As :func:`check_prompt`; a mask input of another shape, not
            finite, or whose count matches neither 1 nor the boxes.
    """
    height, width = size
    masks = check_mask_input(mask_input, mask_side)
    prompt = check_prompt(
        width=width,
        height=height,
        points=point_coords,
        labels=point_labels,
        box=box,
        boxes=None,
        has_mask_input=masks is not None,
    )
    if prompt.boxes is not None and masks is not None and len(masks) not in (1, len(prompt.boxes)):
        n = len(prompt.boxes)
        raise InvalidInput(
            f"mask_input has {len(masks)} masks for {n} box{'es' if n > 1 else ''}; give 1 mask or one per box ({n})"
        )
    batch = max(prompt.batch_size, len(masks) if masks is not None else 1)
    return PredictorPrompt(prompt, masks, batch)


def check_original_size(original_size: object) -> tuple[int, int]:
    """``(height, width)`` of an image in pixels -> two positive ints.

    Raises:
        InvalidInput: Not two whole, positive, finite numbers.
    """
    values = _numbers(original_size, np.float64, "original_size must be (height, width) in pixels")
    if values.shape != (2,) or not np.isfinite(values).all() or (values != np.round(values)).any():
        raise InvalidInput(
            f"original_size must be (height, width): two whole numbers of pixels, got {original_size!r}"
        )
    if (values <= 0).any():
        raise InvalidInput(f"original_size must be positive, got {original_size!r}")
    return int(values[0]), int(values[1])


def check_mask_input(mask_input: object, side: int) -> np.ndarray | None:
    """``1xLxL`` or ``Bx1xLxL`` low-res logits (``L = side``) -> ``Bx1xLxL`` float32, or None.

    Raises:
        InvalidInput: Not numbers, another shape, NaN or infinity.
    """
    if mask_input is None:
        return None
    masks = _numbers(mask_input, np.float32, "mask_input must be numbers (low-res logits)")
    if masks.ndim == 3:
        masks = masks[None]
    if masks.ndim != 4 or masks.shape[1:] != (1, side, side):
        raise InvalidInput(
            f"mask_input must be 1x{side}x{side} or Bx1x{side}x{side} logits, got {masks.shape}"
        )
    if not np.isfinite(masks).all():
        raise InvalidInput("mask_input contains NaN or infinite values")
    return masks


def _points(
    points: object, labels: object, width: int, height: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    check_points_paired(points, labels)
    if points is None or labels is None:
        return None, None
    message = "points must be [[x, y], ...] numbers and labels [1, 0, ...]"
    coords = _numbers(points, np.float64, message)
    point_labels = _numbers(labels, np.float64, message)
    if coords.size == 0 and point_labels.size == 0:
        return None, None
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise InvalidInput(f"points must be a list of [x, y] pairs (Nx2), got shape {list(coords.shape)}")
    if point_labels.ndim != 1:
        raise InvalidInput(
            f"labels must be a flat list [1, 0, ...] with one label per point, got shape {list(point_labels.shape)}"
        )
    if len(point_labels) != len(coords):
        raise InvalidInput(
            f"got {len(coords)} points but {point_labels.size} labels; give one label (1 or 0) per point"
        )
    if not np.isin(point_labels, (0, 1)).all():
        raise InvalidInput("labels must be 1 (foreground) or 0 (background)")
    _inside(coords, width, height, "point")
    return coords.astype(np.float32), point_labels.astype(np.int64)


def check_points_paired(points: object, labels: object) -> None:
    """Raise :class:`InvalidInput` unless points and labels are both given or both None."""
    if (points is None) != (labels is None):
        raise InvalidInput("points and labels go together: give both or neither")


def _numbers(value: object, dtype: type[np.floating], message: str) -> np.ndarray:
    """``value`` (nested lists, a numpy array or a torch tensor on any device, of any dtype,
    with or without autograd) as a ``dtype`` array; :class:`InvalidInput` with ``message`` if
    it is not numbers."""
    detach = getattr(value, "detach", None)
    if callable(detach):  # a torch tensor; bfloat16 has no numpy type, so go through float64
        value = detach().cpu().double()
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(message) from exc


def _boxes(boxes: object, width: int, height: int) -> np.ndarray:
    array = _numbers(boxes, np.float64, "a box is [x1, y1, x2, y2] numbers; boxes are a list of those")
    if array.ndim != 2 or array.shape[1] != 4 or len(array) == 0:
        raise InvalidInput(
            f"a box is [x1, y1, x2, y2]; boxes are a non-empty list of those, got shape {list(array.shape)}"
        )
    _inside(array.reshape(-1, 2), width, height, "box corner")
    if (array[:, 2] < array[:, 0]).any() or (array[:, 3] < array[:, 1]).any():
        raise InvalidInput("box is inverted: need x1 <= x2 and y1 <= y2 ([x1, y1, x2, y2] in pixels)")
    return array.astype(np.float32)


def _inside(xy: np.ndarray, width: int, height: int, what: str) -> None:
    if not np.isfinite(xy).all():
        raise InvalidInput(f"{what} coordinates must be finite numbers (got NaN or infinity)")
    outside = (xy[:, 0] < 0) | (xy[:, 0] > width) | (xy[:, 1] < 0) | (xy[:, 1] > height)
    if outside.any():
        x, y = xy[int(np.argmax(outside))]
        raise InvalidInput(
            f"{what} ({x:g}, {y:g}) is outside the {width}x{height} image; use pixel coordinates"
        )
