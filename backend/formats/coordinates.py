"""The one place where coordinates change frames.

Frames (all ``(x, y)`` with origin top-left, x to the right, y down):

* **original**: pixels of the decoded image (EXIF orientation applied),
  ``0 <= x <= width``, ``0 <= y <= height``, floats allowed.
* **model input**: the image resized so its longest side equals the model's
  ``image_size`` (1024 for the official models), then padded bottom-right to
  a square. Only the resized part (``input_size``) holds the image.
* **low-res**: the decoder's mask logits, ``image_size / 4`` on each side,
  covering the padded model input.
* **Label Studio**: percentages of the image width and height (0..100).
* **canvas**: pixels of the notebook canvas, the image drawn scaled by
  ``scale`` from the top-left corner.

Functions take and return plain floats or arrays; array functions accept
numpy arrays and torch tensors alike (so this module never imports torch).
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np

from backend.api.errors import InvalidInput

ArrayT = TypeVar("ArrayT")


def resized_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """Size of an image after resizing its longest side to ``long_side``.

    Args:
        height: Original height in pixels.
        width: Original width in pixels.
        long_side: Target length of the longest side (the model's image size).

    Returns:
        ``(new_height, new_width)`` in pixels, rounded half up, each at least 1.
    """
    if height <= 0 or width <= 0:
        raise InvalidInput(f"image size must be positive, got {width}x{height}")
    scale = long_side / max(height, width)
    # at least one pixel: a 1x300 image on a 128-pixel model would otherwise round to width 0
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def _scaled_copy(array: ArrayT, scale_x: float, scale_y: float) -> ArrayT:
    """Copy of a ``...x(2k)`` array with even columns scaled by ``scale_x``, odd by ``scale_y``."""
    out: Any = array.clone().float() if hasattr(array, "clone") else np.array(array, dtype=np.float64)
    out[..., 0::2] = out[..., 0::2] * scale_x
    out[..., 1::2] = out[..., 1::2] * scale_y
    return out


def to_model_points(points: ArrayT, original_size: tuple[int, int], input_size: tuple[int, int]) -> ArrayT:
    """Original-image pixel points -> model-input pixel points.

    Args:
        points: ``...x2`` array of ``(x, y)`` in original pixels.
        original_size: ``(height, width)`` of the original image.
        input_size: ``(height, width)`` of the resized image inside the model input.

    Returns:
        ``...x2`` float array in model-input pixels (a new array).
    """
    return _scaled_copy(points, input_size[1] / original_size[1], input_size[0] / original_size[0])


def to_model_boxes(boxes: ArrayT, original_size: tuple[int, int], input_size: tuple[int, int]) -> ArrayT:
    """Original-image ``...x4`` XYXY boxes -> model-input pixels (see :func:`to_model_points`)."""
    return _scaled_copy(boxes, input_size[1] / original_size[1], input_size[0] / original_size[0])


LS_PERCENT_SLACK = 1e-6
"""Label Studio's float arithmetic puts an edge a hair outside 0..100 (936/1000*100 + 6.4 =
100.00000000000001): values within this many percent of the range are clamped to it;
others stay, and are refused as outside the image."""


def ls_percent_to_pixels(x_pct: float, y_pct: float, width: int, height: int) -> tuple[float, float]:
    """Label Studio percentages -> original-image pixels.

    Args:
        x_pct: x as a percentage of ``width`` (0..100; see :data:`LS_PERCENT_SLACK`).
        y_pct: y as a percentage of ``height`` (0..100).
        width: Image width in pixels.
        height: Image height in pixels.
    """
    return _in_range(x_pct) / 100.0 * width, _in_range(y_pct) / 100.0 * height


def _in_range(percent: float) -> float:
    """``percent`` clamped to 0..100 when it is within :data:`LS_PERCENT_SLACK` of it."""
    if -LS_PERCENT_SLACK <= percent <= 100.0 + LS_PERCENT_SLACK:
        return min(100.0, max(0.0, percent))
    return percent


def pixels_to_ls_percent(x: float, y: float, width: int, height: int) -> tuple[float, float]:
    """Original-image pixels -> Label Studio percentages (inverse of :func:`ls_percent_to_pixels`)."""
    return x / width * 100.0, y / height * 100.0


def ls_rect_to_box(
    x_pct: float, y_pct: float, w_pct: float, h_pct: float, width: int, height: int
) -> list[float]:
    """A Label Studio rectangle (top-left corner and size, in percent) -> XYXY pixel box."""
    x1, y1 = ls_percent_to_pixels(x_pct, y_pct, width, height)
    x2, y2 = ls_percent_to_pixels(x_pct + w_pct, y_pct + h_pct, width, height)
    return [x1, y1, x2, y2]


def fit_scale(width: int, height: int, max_width: int, max_height: int) -> float:
    """Largest scale <= 1 at which a ``width x height`` image fits in ``max_width x max_height``."""
    if width <= 0 or height <= 0:
        raise InvalidInput(f"image size must be positive, got {width}x{height}")
    return min(1.0, max_width / width, max_height / height)


def canvas_to_image(x: float, y: float, scale: float) -> tuple[float, float]:
    """Canvas pixels -> original-image pixels for an image drawn at ``scale``."""
    return x / scale, y / scale


def image_to_canvas(x: float, y: float, scale: float) -> tuple[float, float]:
    """Original-image pixels -> canvas pixels (inverse of :func:`canvas_to_image`)."""
    return x * scale, y * scale


def screen_to_canvas(
    x: float, y: float, *, shown_size: tuple[float, float], canvas_size: tuple[int, int]
) -> tuple[float, float]:
    """Browser CSS pixels on a canvas element -> canvas pixels.

    The page may show a canvas at another size than its own (a narrow
    notebook column stretches it); the element's on-screen size gives the
    ratio. An unknown on-screen size (0) means "shown at its own size".

    Args:
        x: CSS pixels from the element's left edge.
        y: CSS pixels from the element's top edge.
        shown_size: ``(width, height)`` of the element on screen, CSS pixels.
        canvas_size: ``(width, height)`` of the canvas in its own pixels.
    """
    shown_width, shown_height = shown_size
    if shown_width > 0 and shown_height > 0:
        return x * canvas_size[0] / shown_width, y * canvas_size[1] / shown_height
    return x, y
