"""Overlay pixels, the canvas sampling grid and the lossless trip to the browser."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from backend.formats.coordinates import canvas_to_image, fit_scale
from widget.drawing import (
    CANDIDATE_COLOR,
    CanvasGrid,
    canvas_size_for,
    label_color,
    overlay_png,
    scaled_image,
)


@given(
    image=st.tuples(st.integers(1, 3000), st.integers(1, 3000)),
    limit=st.tuples(st.integers(1, 800), st.integers(1, 800)),
    data=st.data(),
)
def test_each_canvas_pixel_shows_the_image_pixel_under_its_centre(
    image: tuple[int, int], limit: tuple[int, int], data: st.DataObject
) -> None:
    scale = fit_scale(*image, *limit)
    canvas = canvas_size_for(image, scale)
    grid = CanvasGrid.build(scale=scale, canvas_size=canvas, image_size=image)
    i = data.draw(st.integers(0, canvas[0] - 1))
    j = data.draw(st.integers(0, canvas[1] - 1))
    x, y = canvas_to_image(i + 0.5, j + 0.5, scale)
    assert grid.cols[i] == min(int(x), image[0] - 1)
    assert grid.rows[j] == min(int(y), image[1] - 1)
    assert canvas[0] <= max(limit[0], 1) + 0.5 and canvas[1] <= max(limit[1], 1) + 0.5


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


def test_overlay_colours_layers_in_order_later_on_top() -> None:
    grid = CanvasGrid.build(scale=0.5, canvas_size=(4, 3), image_size=(8, 6))
    a = np.zeros((6, 8), dtype=bool)
    a[:, :4] = True
    b = np.zeros((6, 8), dtype=bool)
    b[:2] = True
    png = overlay_png(grid, layers=[(a, label_color(0)), (b, CANDIDATE_COLOR)], opacity=0.5)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    rgba = decode(png)
    assert rgba.shape == (3, 4, 4)
    assert tuple(rgba[0, 0]) == (*CANDIDATE_COLOR, 128)
    assert tuple(rgba[2, 0]) == (*label_color(0), 128)
    assert tuple(rgba[2, 3]) == (0, 0, 0, 0)


@given(seed=st.integers(0, 2**32 - 1), opacity=st.floats(0, 1), n=st.integers(0, 9))
def test_overlay_png_is_lossless_for_any_masks(seed: int, opacity: float, n: int) -> None:
    rng = np.random.default_rng(seed)
    grid = CanvasGrid.build(scale=1.0, canvas_size=(23, 17), image_size=(23, 17))
    layers = [(rng.random((17, 23)) < 0.3, label_color(i)) for i in range(n)]
    expected = np.zeros((17, 23, 4), dtype=np.uint8)
    for mask, color in layers:
        expected[mask] = (*color, round(255 * opacity))
    got = decode(overlay_png(grid, layers=layers, opacity=opacity))
    np.testing.assert_array_equal(got[..., 3], expected[..., 3])
    visible = expected[..., 3] > 0
    np.testing.assert_array_equal(got[visible], expected[visible])  # colour matters only where visible


def test_scaled_image_has_canvas_size() -> None:
    pixels = np.zeros((300, 400, 3), dtype=np.uint8)
    assert scaled_image(pixels, (200, 150)).shape == (150, 200, 3)
    assert scaled_image(pixels, (400, 300)) is pixels
