"""Overlay pixels, the canvas sampling grid and the lossless trip to the browser."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from backend.api.errors import InvalidInput
from backend.formats.coordinates import canvas_to_image, fit_scale
from widget.drawing import (
    CONTRAST_PALETTE,
    CanvasGrid,
    MaskLayer,
    canvas_size_for,
    contrast_color,
    label_color,
    mask_layers,
    outline,
    overlay_png,
    parse_color,
    scaled_image,
)
from widget.state import AcceptedMask, Candidate

MAGENTA = (255, 0, 255)


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
    png = overlay_png(grid, layers=[MaskLayer(a, label_color(0)), MaskLayer(b, MAGENTA)], opacity=0.5)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    rgba = decode(png)
    assert rgba.shape == (3, 4, 4)
    assert tuple(rgba[0, 0]) == (*MAGENTA, 128)
    assert tuple(rgba[2, 0]) == (*label_color(0), 128)
    assert tuple(rgba[2, 3]) == (0, 0, 0, 0)


@given(seed=st.integers(0, 2**32 - 1), opacity=st.floats(0, 1), n=st.integers(0, 9))
def test_overlay_png_is_lossless_for_any_masks(seed: int, opacity: float, n: int) -> None:
    rng = np.random.default_rng(seed)
    grid = CanvasGrid.build(scale=1.0, canvas_size=(23, 17), image_size=(23, 17))
    layers = [MaskLayer(rng.random((17, 23)) < 0.3, label_color(i), outline=i % 3) for i in range(n)]
    expected = np.zeros((17, 23, 4), dtype=np.uint8)
    for layer in layers:
        expected[layer.mask] = (*layer.color, round(255 * opacity))
        expected[outline(layer.mask, layer.outline)] = (*layer.color, 255)
    got = decode(overlay_png(grid, layers=layers, opacity=opacity))
    np.testing.assert_array_equal(got[..., 3], expected[..., 3])
    visible = expected[..., 3] > 0
    np.testing.assert_array_equal(got[visible], expected[visible])  # colour matters only where visible


def test_scaled_image_has_canvas_size() -> None:
    pixels = np.zeros((300, 400, 3), dtype=np.uint8)
    assert scaled_image(pixels, (200, 150)).shape == (150, 200, 3)
    assert scaled_image(pixels, (400, 300)) is pixels


def square(size: int = 12, lo: int = 3, hi: int = 9) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[lo:hi, lo:hi] = True
    return mask


def test_outline_is_the_ring_of_mask_pixels_within_its_width() -> None:
    mask = square()
    ring = outline(mask, 1)
    assert ring.sum() == 6 * 6 - 4 * 4
    assert ring[3, 3] and ring[3, 8] and not ring[4, 4]
    assert (outline(mask, 2) == (mask & ~square(lo=5, hi=7))).all()
    assert not outline(mask, 0).any()
    full = np.ones((4, 5), dtype=bool)
    assert outline(full, 1).sum() == 4 * 5 - 2 * 3  # the canvas border counts as outside


def test_overlay_fills_at_opacity_and_outlines_opaque() -> None:
    grid = CanvasGrid.build(scale=1.0, canvas_size=(12, 12), image_size=(12, 12))
    rgba = decode(overlay_png(grid, layers=[MaskLayer(square(), MAGENTA, outline=2)], opacity=0.3))
    assert tuple(rgba[3, 3]) == (*MAGENTA, 255) and tuple(rgba[4, 6]) == (*MAGENTA, 255)
    assert tuple(rgba[5, 5]) == (*MAGENTA, round(0.3 * 255))
    assert rgba[0, 0, 3] == 0


def test_contrast_color_is_the_palette_colour_farthest_from_the_pixels_under_the_mask() -> None:
    pixels = np.zeros((12, 12, 3), dtype=np.uint8)
    pixels[3:9, 3:9] = (20, 40, 230)  # a blue object
    pixels[:3] = (250, 250, 10)  # a yellow sky that the mask does not cover
    assert contrast_color(pixels, square(), CONTRAST_PALETTE) == (255, 255, 0)
    pixels[3:9, 3:9] = (240, 230, 20)  # a yellow object
    assert contrast_color(pixels, square(), CONTRAST_PALETTE) == (0, 0, 255)
    assert contrast_color(pixels, np.zeros((12, 12), dtype=bool), CONTRAST_PALETTE) == CONTRAST_PALETTE[0]
    assert contrast_color(pixels, square(), [(1, 2, 3)]) == (1, 2, 3)
    thin = np.zeros((12, 12), dtype=bool)
    thin[1, 1:3] = True  # between the sampled rows: the full mask decides
    assert contrast_color(pixels, thin, CONTRAST_PALETTE) == (0, 0, 255)  # the yellow sky


def test_mask_layers_put_the_candidate_on_top_outlined_in_its_contrast_colour() -> None:
    grid = CanvasGrid.build(scale=1.0, canvas_size=(12, 12), image_size=(12, 12))
    pixels = np.full((12, 12, 3), (20, 40, 230), dtype=np.uint8)
    kept = [AcceptedMask(square(lo=0, hi=4), "b"), AcceptedMask(square(lo=8, hi=12), "zebra")]
    candidate = Candidate(square(), raw_score=1.02, stability_score=0.9)
    layers, color = mask_layers(
        grid, pixels, masks=kept, labels=["a", "b"], chosen=candidate, palette=CONTRAST_PALETTE
    )
    assert color == (255, 255, 0)
    assert [(layer.color, layer.outline > 0) for layer in layers] == [
        (label_color(1), True),
        (label_color(2), True),
        (color, True),
    ]
    assert layers[-1].mask is candidate.mask and layers[-1].outline > layers[0].outline
    assert mask_layers(grid, pixels, masks=[], labels=["a"], chosen=None, palette=CONTRAST_PALETTE) == (
        [],
        None,
    )


def test_parse_color_takes_tuples_and_hex_and_says_what_works() -> None:
    assert parse_color("#FF8000") == (255, 128, 0)
    assert parse_color([1, 2, 3]) == (1, 2, 3)
    for bad in ["red", (1, 2), (0, 0, 256), "#12345"]:
        with pytest.raises(InvalidInput, match="#ff00ff"):
            parse_color(bad)  # type: ignore[arg-type]
