"""Procedurally generated scenes with exact instance masks.

A scene is a square RGB image with a cluttered, textured background (noise,
gradients, stripes, random thin lines) on which several shapes are painted
back to front: ellipses, polygons, stars, rings with a hole and thin bars,
each filled with its own texture (flat colour with noise, stripes, a
gradient or a checkerboard). Instance masks are the *visible* pixels of each
shape, so occlusion order is respected: a shape painted later removes its
pixels from every earlier mask, and a ring's hole shows what lies behind.

Everything is drawn with numpy (and PIL for polygons) from a seeded
``numpy.random.Generator``: the same ``(seed, size, settings)`` always gives
the same pixels and masks. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from backend.api.errors import InvalidInput

SHAPE_KINDS: tuple[str, ...] = ("ellipse", "polygon", "star", "ring", "bar")


@dataclass(frozen=True)
class Scene:
    """One generated picture and its objects.

    Attributes:
        image: ``HxWx3`` uint8 RGB pixels.
        masks: ``NxHxW`` bool visible-pixel masks, in painting order (back to
            front); every mask has at least ``min_area`` pixels.
        labels: ``N`` shape kinds (one of :data:`SHAPE_KINDS`).
    """

    image: np.ndarray
    masks: np.ndarray
    labels: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class SceneSettings:
    """How hard scenes are.

    Attributes:
        size: Side of the square image, in pixels.
        min_objects: Fewest shapes painted per scene.
        max_objects: Most shapes painted per scene.
        min_area: Visible pixels an object needs to be kept as an instance.
        clutter_lines: Most random thin lines drawn on the background.
        noise_sigma: Standard deviation of the pixel noise on the 0..255 scale.
    """

    size: int = 256
    min_objects: int = 3
    max_objects: int = 6
    min_area: int = 80
    clutter_lines: int = 12
    noise_sigma: float = 8.0


def generate_scene(seed: int, settings: SceneSettings | None = None) -> Scene:
    """Draws the scene of one seed.

    Args:
        seed: Any non-negative integer; equal seeds give equal scenes.
        settings: Difficulty; defaults to :class:`SceneSettings()`.

    Returns:
        The scene (image, visible masks, shape kinds).

    Raises:
        InvalidInput: On a negative seed or impossible settings.
    """
    settings = settings or SceneSettings()
    _check_settings(seed, settings)
    rng = np.random.default_rng(seed)
    size = settings.size
    grid = _Grid(size)
    canvas = _background(rng, grid, settings)
    owner = np.full((size, size), -1, dtype=np.int32)
    kinds: list[str] = []
    count = int(rng.integers(settings.min_objects, settings.max_objects + 1))
    for index in range(count):
        kind = SHAPE_KINDS[int(rng.integers(len(SHAPE_KINDS)))]
        shape = _SHAPES[kind](rng, grid)
        canvas = np.where(shape[..., None], _texture(rng, grid), canvas)
        owner[shape] = index
        kinds.append(kind)
    canvas += rng.normal(0.0, settings.noise_sigma, canvas.shape)
    image = np.clip(canvas, 0, 255).astype(np.uint8)
    masks, labels = [], []
    for index, kind in enumerate(kinds):
        visible = owner == index
        if int(visible.sum()) >= settings.min_area:
            masks.append(visible)
            labels.append(kind)
    stacked = np.stack(masks) if masks else np.zeros((0, size, size), dtype=bool)
    return Scene(image=image, masks=stacked, labels=tuple(labels))


def _check_settings(seed: int, settings: SceneSettings) -> None:
    if seed < 0:
        raise InvalidInput(f"scene seed must be >= 0, got {seed}")
    if settings.size < 32:
        raise InvalidInput(f"scene size must be >= 32 pixels, got {settings.size}")
    if not 1 <= settings.min_objects <= settings.max_objects:
        raise InvalidInput(
            f"need 1 <= min_objects <= max_objects, got {settings.min_objects}, {settings.max_objects}"
        )


class _Grid:
    """Pixel-centre coordinates of a ``size x size`` image, shared by the drawers."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.y, self.x = np.mgrid[0:size, 0:size].astype(np.float64)


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3)


def _background(rng: np.random.Generator, grid: _Grid, settings: SceneSettings) -> np.ndarray:
    """``HxWx3`` float64 texture plus random thin lines."""
    canvas = _texture(rng, grid) * 0.6 + _smooth_noise(rng, grid) * 0.4
    lines = int(rng.integers(0, settings.clutter_lines + 1))
    if lines:
        picture = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(picture)
        for _ in range(lines):
            ends = rng.uniform(0, grid.size, 4).tolist()
            fill = tuple(int(v) for v in _colour(rng))
            draw.line(ends, fill=fill, width=int(rng.integers(1, 3)))
        canvas = np.asarray(picture, dtype=np.float64)
    return canvas


def _smooth_noise(rng: np.random.Generator, grid: _Grid) -> np.ndarray:
    """Blobby colour noise: a coarse random grid upsampled bilinearly."""
    cells = int(rng.integers(3, 9))
    coarse = rng.uniform(0, 255, (cells, cells, 3)).astype(np.uint8)
    return np.asarray(
        Image.fromarray(coarse).resize((grid.size, grid.size), Image.Resampling.BILINEAR), dtype=np.float64
    )


def _texture(rng: np.random.Generator, grid: _Grid) -> np.ndarray:
    """A full ``HxWx3`` float64 fill: flat, stripes, gradient or checkerboard."""
    first, second = _colour(rng), _colour(rng)
    kind = int(rng.integers(4))
    if kind == 0:
        return np.broadcast_to(first, (grid.size, grid.size, 3)).copy()
    angle = rng.uniform(0, np.pi)
    along = grid.x * np.cos(angle) + grid.y * np.sin(angle)
    if kind == 1:
        period = rng.uniform(4, 16)
        weight = (np.sin(2 * np.pi * along / period) > 0).astype(np.float64)
    elif kind == 2:
        weight = (along - along.min()) / max(float(np.ptp(along)), 1.0)
    else:
        cell = rng.uniform(4, 14)
        weight = ((np.floor(grid.x / cell) + np.floor(grid.y / cell)) % 2).astype(np.float64)
    return first * (1 - weight[..., None]) + second * weight[..., None]


def _centre_and_radius(rng: np.random.Generator, grid: _Grid) -> tuple[float, float, float]:
    radius = rng.uniform(0.08, 0.22) * grid.size
    cx, cy = rng.uniform(0.1 * grid.size, 0.9 * grid.size, 2)
    return float(cx), float(cy), float(radius)


def _ellipse(rng: np.random.Generator, grid: _Grid) -> np.ndarray:
    cx, cy, radius = _centre_and_radius(rng, grid)
    return _ellipse_field(rng, grid, cx, cy, radius, radius * rng.uniform(0.4, 1.0)) <= 1.0


def _ellipse_field(
    rng: np.random.Generator, grid: _Grid, cx: float, cy: float, a: float, b: float
) -> np.ndarray:
    """``((x'/a)^2 + (y'/b)^2)`` in a randomly rotated frame centred on ``(cx, cy)``."""
    angle = rng.uniform(0, np.pi)
    dx, dy = grid.x - cx, grid.y - cy
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    return (u / a) ** 2 + (v / b) ** 2


def _ring(rng: np.random.Generator, grid: _Grid) -> np.ndarray:
    cx, cy, radius = _centre_and_radius(rng, grid)
    radius = max(radius, 0.12 * grid.size)
    field = _ellipse_field(rng, grid, cx, cy, radius, radius * rng.uniform(0.6, 1.0))
    inner = rng.uniform(0.3, 0.6)
    return (field <= 1.0) & (field >= inner**2)


def _polygon_mask(grid: _Grid, vertices: np.ndarray) -> np.ndarray:
    picture = Image.new("1", (grid.size, grid.size), 0)
    ImageDraw.Draw(picture).polygon([tuple(v) for v in vertices.tolist()], fill=1)
    return np.asarray(picture, dtype=bool)


def _radial_polygon(rng: np.random.Generator, grid: _Grid, radii: np.ndarray) -> np.ndarray:
    cx, cy, radius = _centre_and_radius(rng, grid)
    count = len(radii)
    angles = (
        np.sort(rng.uniform(0, 2 * np.pi, count))
        if count > 8
        else (np.arange(count) * 2 * np.pi / count + rng.uniform(0, 2 * np.pi))
    )
    vertices = np.stack([cx + radius * radii * np.cos(angles), cy + radius * radii * np.sin(angles)], 1)
    return _polygon_mask(grid, vertices)


def _polygon(rng: np.random.Generator, grid: _Grid) -> np.ndarray:
    count = int(rng.integers(3, 8))
    return _radial_polygon(rng, grid, rng.uniform(0.6, 1.2, count))


def _star(rng: np.random.Generator, grid: _Grid) -> np.ndarray:
    tips = int(rng.integers(4, 8))
    radii = np.tile([1.2, rng.uniform(0.35, 0.6)], tips)
    return _radial_polygon(rng, grid, radii)


def _bar(rng: np.random.Generator, grid: _Grid) -> np.ndarray:
    """A thin rotated rectangle (4-9 px wide, a third to two thirds of the image long)."""
    cx, cy, _ = _centre_and_radius(rng, grid)
    length = rng.uniform(0.3, 0.65) * grid.size
    width = rng.uniform(4, 9)
    angle = rng.uniform(0, np.pi)
    along = np.array([np.cos(angle), np.sin(angle)])
    across = np.array([-along[1], along[0]])
    centre = np.array([cx, cy])
    corners = [
        centre + sa * along * length / 2 + sb * across * width / 2
        for sa, sb in ((-1, -1), (1, -1), (1, 1), (-1, 1))
    ]
    return _polygon_mask(grid, np.stack(corners))


_SHAPES: dict[str, Callable[[np.random.Generator, _Grid], np.ndarray]] = {
    "ellipse": _ellipse,
    "polygon": _polygon,
    "star": _star,
    "ring": _ring,
    "bar": _bar,
}
