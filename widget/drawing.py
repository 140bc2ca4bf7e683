"""Pixels for the three canvas layers: the scaled image, the mask overlay, the prompts.

Every mask is filled (at the overlay opacity) and outlined (opaque). The
shown candidate takes the colour of a small palette that lies farthest from
the mean colour of the pixels under it (:func:`contrast_color`), so it stays
visible on a blue car as on a yellow one; accepted masks keep their label
colours. The instances of a concept (SAM 3) each take their own colour of
:data:`INSTANCE_PALETTE`, with a numbered tag and score at their top-left
corner; picked ones are filled more strongly and outlined thicker.

The overlay is built at canvas resolution: canvas pixel ``(i, j)`` shows the
mask value at the original-image pixel that holds the canvas pixel's centre,
found through :func:`backend.formats.coordinates.canvas_to_image` (the one
canvas <-> image conversion). It travels to the browser as a lossless PNG with
alpha, never through ipycanvas' ``put_image_data`` path for RGB arrays, which
JPEG-compresses them.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from backend.api.errors import InvalidInput
from backend.formats.coordinates import canvas_to_image, image_to_canvas
from widget.export import mask_bbox_xywh
from widget.state import AcceptedMask, Box, Candidate, Point

if TYPE_CHECKING:
    from ipycanvas import Canvas

Color = tuple[int, int, int]

CONTRAST_PALETTE: tuple[Color, ...] = (
    (255, 0, 255),
    (0, 255, 255),
    (255, 255, 0),
    (0, 0, 255),
    (255, 0, 0),
    (0, 255, 0),
)
"""Colours the shown candidate may take (corners of the RGB cube but black and white)."""
CANDIDATE_OUTLINE = 2
CONTRAST_SAMPLE_STEP = 4
ACCEPTED_OUTLINE = 1
POSITIVE_COLOR = "#2ecc40"
NEGATIVE_COLOR = "#ff4136"
BOX_COLOR = "#ffdc00"
POINT_RADIUS = 5.0
INSTANCE_PALETTE: tuple[Color, ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
)
"""Colours of concept instances, in order (they cycle): ten that tell apart at a glance."""
INSTANCE_OUTLINE = 1
PICKED_OUTLINE = 3
UNPICKED_FILL = 0.5
"""Fraction of the overlay opacity an instance not picked is filled with."""
TAG_FONT_PX = 12
LABEL_PALETTE: tuple[Color, ...] = (
    (255, 99, 71),
    (60, 179, 113),
    (238, 130, 238),
    (255, 215, 0),
    (0, 206, 209),
    (255, 140, 0),
    (147, 112, 219),
    (154, 205, 50),
)


def label_color(index: int) -> Color:
    """The overlay colour of the ``index``-th label (cycles through :data:`LABEL_PALETTE`)."""
    return LABEL_PALETTE[index % len(LABEL_PALETTE)]


def instance_color(index: int) -> Color:
    """The colour of the ``index``-th concept instance (cycles through :data:`INSTANCE_PALETTE`)."""
    return INSTANCE_PALETTE[index % len(INSTANCE_PALETTE)]


def hex_color(color: Color) -> str:
    """``"#rrggbb"`` of an ``(r, g, b)`` colour."""
    return "#{:02x}{:02x}{:02x}".format(*color)


def parse_color(value: Sequence[int] | str) -> Color:
    """An ``(r, g, b)`` tuple of ints 0..255 from such a sequence or a ``"#rrggbb"`` string.

    Raises:
        InvalidInput: Anything else, with an example of what works.
    """
    try:
        if isinstance(value, str):
            text = value.strip().lstrip("#")
            if len(text) != 6:
                raise ValueError(value)
            channels = [int(text[i : i + 2], 16) for i in (0, 2, 4)]
        else:
            channels = [int(v) for v in value]
            if len(channels) != 3 or not all(0 <= c <= 255 for c in channels):
                raise ValueError(value)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"{value!r} is not a colour: give (r, g, b) with ints 0..255, e.g. (255, 0, 255), or '#ff00ff'"
        ) from None
    return channels[0], channels[1], channels[2]


def contrast_color(pixels: np.ndarray, shown: np.ndarray, palette: Sequence[Color]) -> Color:
    """The palette colour farthest (RGB distance) from the mean colour of the masked pixels.

    Args:
        pixels: ``hxwx3`` uint8 image at canvas size.
        shown: ``hxw`` bool mask at canvas size.
        palette: Candidate colours (at least one).

    Returns:
        The first palette colour when the mask is empty.
    """
    step = CONTRAST_SAMPLE_STEP
    sample = shown[::step, ::step]
    if sample.any():  # every step-th row and column is plenty for a mean colour
        mean = pixels[::step, ::step][sample].mean(axis=0)
    elif shown.any():  # a mask thinner than the sampling
        mean = pixels[shown].mean(axis=0)
    else:
        return palette[0]
    distances = [float(np.sum((np.asarray(color, dtype=np.float64) - mean) ** 2)) for color in palette]
    return palette[int(np.argmax(distances))]


def outline(shown: np.ndarray, width: int) -> np.ndarray:
    """``hxw`` bool: the mask pixels within ``width`` pixels (4-neighbour steps) of its edge.

    Pixels outside the canvas count as outside the mask, so a mask that
    touches the border is outlined along it too.
    """
    inner = shown.copy()
    for _ in range(width):
        padded = np.pad(inner, 1, constant_values=False)
        inner &= padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return shown & ~inner


@dataclass(frozen=True, eq=False)
class MaskLayer:
    """One mask of the overlay.

    Attributes:
        mask: ``HxW`` bool at the original image size.
        color: Fill and outline colour.
        outline: Width of the opaque outline in canvas pixels (0: none).
        fill: Fraction of the overlay opacity the inside is filled with.
    """

    mask: np.ndarray
    color: Color
    outline: int = 0
    fill: float = 1.0


@dataclass(frozen=True)
class CanvasGrid:
    """Which original-image pixel each canvas pixel shows.

    Attributes:
        rows: ``canvas_height`` int64 image row of each canvas row's centre.
        cols: ``canvas_width`` int64 image column of each canvas column's centre.
        identity: True when canvas pixel ``(i, j)`` is image pixel ``(i, j)`` (scale 1).
    """

    rows: np.ndarray
    cols: np.ndarray
    identity: bool = False

    @classmethod
    def build(cls, *, scale: float, canvas_size: tuple[int, int], image_size: tuple[int, int]) -> CanvasGrid:
        """Grid for an image of ``image_size`` (width, height) drawn at ``scale`` on ``canvas_size``."""
        canvas_width, canvas_height = canvas_size
        image_width, image_height = image_size
        image_x = [canvas_to_image(i + 0.5, 0.0, scale)[0] for i in range(canvas_width)]
        image_y = [canvas_to_image(0.0, j + 0.5, scale)[1] for j in range(canvas_height)]
        cols = np.clip(np.floor(image_x).astype(np.int64), 0, image_width - 1)
        rows = np.clip(np.floor(image_y).astype(np.int64), 0, image_height - 1)
        identity = bool(
            np.array_equal(rows, np.arange(image_height)) and np.array_equal(cols, np.arange(image_width))
        )
        return cls(rows=rows, cols=cols, identity=identity)

    @property
    def canvas_size(self) -> tuple[int, int]:
        """``(width, height)`` in canvas pixels."""
        return len(self.cols), len(self.rows)

    def sample(self, mask: np.ndarray) -> np.ndarray:
        """``canvas_height x canvas_width`` bool (C-contiguous) view of an ``HxW`` bool mask."""
        if self.identity:
            return np.ascontiguousarray(mask, dtype=bool)
        return mask.take(self.rows, axis=0).take(self.cols, axis=1)


def canvas_size_for(image_size: tuple[int, int], scale: float) -> tuple[int, int]:
    """``(width, height)`` of the canvas showing an image of ``image_size`` at ``scale`` (at least 1x1)."""
    width, height = image_to_canvas(image_size[0], image_size[1], scale)
    return max(1, round(width)), max(1, round(height))


def scaled_image(pixels: np.ndarray, canvas_size: tuple[int, int]) -> np.ndarray:
    """The ``HxWx3`` uint8 image resized (area filter) to ``canvas_size``, as ``hxwx3`` uint8."""
    if (pixels.shape[1], pixels.shape[0]) == canvas_size:
        return pixels
    return np.asarray(Image.fromarray(pixels).resize(canvas_size, Image.Resampling.BOX))


def mask_layers(
    grid: CanvasGrid,
    shown_pixels: np.ndarray,
    *,
    masks: Sequence[AcceptedMask],
    labels: Sequence[str],
    chosen: Candidate | None,
    palette: Sequence[Color],
    instances: Sequence[Candidate] = (),
    picked: Collection[int] = (),
) -> tuple[list[MaskLayer], Color | None]:
    """What the mask layer shows: accepted masks in label colours, then the instances or the chosen candidate.

    Args:
        grid: Canvas <-> image sampling grid.
        shown_pixels: ``hxwx3`` uint8 image at canvas size (for the contrast colour).
        masks: Accepted masks; a label missing from ``labels`` gets the next colour.
        labels: The widget's label names, in colour order.
        chosen: The candidate shown, or None.
        palette: Colours the candidate may take (see :func:`contrast_color`).
        instances: Concept instances, each in :func:`instance_color` of its index;
            those not picked lighter and thinly outlined, the picked ones on top.
        picked: Indices of the picked instances.

    Returns:
        ``(layers, candidate colour or None)``.
    """
    label_index = {name: i for i, name in enumerate(labels)}
    layers = [
        MaskLayer(m.mask, label_color(label_index.get(m.label, len(labels))), ACCEPTED_OUTLINE) for m in masks
    ]
    order = sorted(range(len(instances)), key=lambda i: (i in picked, -i))  # picked on top, best on top
    for i in order:
        chosen_one = i in picked
        layers.append(
            MaskLayer(
                instances[i].mask,
                instance_color(i),
                PICKED_OUTLINE if chosen_one else INSTANCE_OUTLINE,
                1.0 if chosen_one else UNPICKED_FILL,
            )
        )
    if chosen is None:
        return layers, None
    color = contrast_color(shown_pixels, grid.sample(chosen.mask), palette)
    layers.append(MaskLayer(chosen.mask, color, CANDIDATE_OUTLINE))
    return layers, color


def overlay_png(grid: CanvasGrid, *, layers: Sequence[MaskLayer], opacity: float) -> bytes:
    """The mask layer as a lossless PNG with alpha, at canvas size.

    An indexed-colour PNG with a transparency chunk: the browser decodes it to
    RGBA exactly (no JPEG), and it encodes about ten times faster than a
    4-channel RGBA PNG because each pixel is one byte.

    Args:
        grid: Canvas <-> image sampling grid.
        layers: Masks drawn in order (later on top).
        opacity: Alpha of filled mask pixels, 0..1 (times each layer's ``fill``);
            outlines are opaque, other pixels fully transparent.

    Returns:
        PNG bytes that decode to ``hxwx4`` RGBA: ``(*colour, round(255 * opacity * fill))``
        inside a mask, ``(*colour, 255)`` on its outline, ``(0, 0, 0, 0)`` elsewhere.
    """
    width, height = grid.canvas_size
    indices = np.zeros((height, width), dtype=np.uint8)
    opacity = min(max(opacity, 0.0), 1.0)
    entries: list[tuple[Color, int]] = [((0, 0, 0), 0)]  # (colour, alpha) of each palette index
    for layer in layers:
        shown = grid.sample(layer.mask)
        _paint(indices, entries, shown, (layer.color, int(round(255 * opacity * layer.fill))))
        if layer.outline > 0:
            _paint(indices, entries, outline(shown, layer.outline), (layer.color, 255))
    palette = [color for color, _ in entries]
    transparency = [a for _, a in entries]
    # Pillow drops the transparency chunk of a two-colour palette: pad with unused, transparent entries.
    padding = max(0, 3 - len(entries))
    palette += [(0, 0, 0)] * padding
    transparency += [0] * padding
    image = Image.frombytes("P", (width, height), indices.tobytes())
    image.putpalette([channel for color in palette for channel in color])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1, transparency=bytes(transparency))
    return buffer.getvalue()


def _paint(
    indices: np.ndarray, entries: list[tuple[Color, int]], where: np.ndarray, entry: tuple[Color, int]
) -> None:
    """Set ``indices`` to the palette index of ``entry`` (added if new) where ``where`` is True, in place."""
    if entry not in entries:
        entries.append(entry)
    index = np.uint8(entries.index(entry))
    indices += where.view(np.uint8) * (index - indices)  # branch-free "indices[where] = index"


def draw_prompts(canvas: Canvas, *, points: Sequence[Point], box: Box | None, scale: float) -> None:
    """Draw the clicks and the box of the current object on the interaction layer.

    Args:
        canvas: The interaction layer (cleared first).
        points: Clicks in original-image pixels.
        box: Box prompt (or the rubber band of a drag) in original-image pixels, or None.
        scale: Canvas pixels per image pixel.
    """
    canvas.clear()
    if box is not None:
        x1, y1 = image_to_canvas(box.x1, box.y1, scale)
        x2, y2 = image_to_canvas(box.x2, box.y2, scale)
        canvas.line_width = 2
        canvas.stroke_style = BOX_COLOR
        canvas.stroke_rect(x1, y1, x2 - x1, y2 - y1)
    canvas.line_width = 2
    canvas.stroke_style = "white"
    for point in points:
        x, y = image_to_canvas(point.x, point.y, scale)
        canvas.fill_style = POSITIVE_COLOR if point.positive else NEGATIVE_COLOR
        canvas.fill_circle(x, y, POINT_RADIUS)
        canvas.stroke_circle(x, y, POINT_RADIUS)


@dataclass(frozen=True)
class InstanceTag:
    """The numbered tag of a concept instance on the prompt layer.

    Attributes:
        text: ``"3 · 0.82"``: the instance's number (its key) and score.
        x: Left edge in canvas pixels.
        y: Top edge in canvas pixels.
        color: The instance's colour (the tag's background).
        picked: The instance is picked (the tag is framed).
    """

    text: str
    x: float
    y: float
    color: Color
    picked: bool


def instance_tags(
    instances: Sequence[Candidate], *, picked: Collection[int], scale: float, canvas_size: tuple[int, int]
) -> list[InstanceTag]:
    """One tag per instance at its box's top-left corner (its mask's when it has no box), inside the canvas.

    A tag that would cover an earlier one (instances whose corners meet) moves
    down (or up, near the bottom) until it covers none, so every number stays readable.
    """
    width, height = canvas_size
    tags: list[InstanceTag] = []
    for i, instance in enumerate(instances):
        if instance.box is not None:
            left, top = instance.box[0], instance.box[1]
        else:
            left, top = mask_bbox_xywh(instance.mask)[:2]
        x, y = image_to_canvas(left, top, scale)
        text = f"{i + 1} · {instance.score:.2f}"
        tag_w, tag_h = tag_size(text)
        x = min(max(float(x), 0.0), max(0.0, width - tag_w))
        y = _free_row(tags, x, min(max(float(y), 0.0), max(0.0, height - tag_h)), tag_w, tag_h, height)
        tags.append(InstanceTag(text, x, y, instance_color(i), i in picked))
    return tags


def _free_row(
    placed: Sequence[InstanceTag], x: float, y: float, tag_w: float, tag_h: float, height: int
) -> float:
    """The top edge nearest ``y`` (down first, then up) where a ``tag_w x tag_h`` tag at ``x`` covers no placed tag."""

    def free(top: float) -> bool:
        for tag in placed:
            other_w, other_h = tag_size(tag.text)
            if x < tag.x + other_w and tag.x < x + tag_w and top < tag.y + other_h and tag.y < top + tag_h:
                return False
        return True

    step = tag_h + 1.0
    lowest = max(0.0, height - tag_h)
    for k in range(int(height // step) + 1):
        for top in (y + k * step, y - k * step):
            if 0.0 <= top <= lowest and free(top):
                return top
    return y


def tag_size(text: str) -> tuple[float, float]:
    """``(width, height)`` in canvas pixels a tag with ``text`` takes (bold :data:`TAG_FONT_PX` px sans-serif)."""
    return 0.62 * TAG_FONT_PX * len(text) + 8.0, TAG_FONT_PX + 6.0


def text_color_on(color: Color) -> str:
    """Black or white, whichever reads better on ``color``."""
    r, g, b = color
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#ffffff"


def draw_instance_tags(canvas: Canvas, tags: Sequence[InstanceTag]) -> None:
    """Draw ``tags`` on the prompt layer (not cleared: call after :func:`draw_prompts`)."""
    canvas.font = f"bold {TAG_FONT_PX}px sans-serif"
    canvas.text_baseline = "top"
    for tag in tags:
        tag_w, tag_h = tag_size(tag.text)
        canvas.fill_style = hex_color(tag.color)
        canvas.fill_rect(tag.x, tag.y, tag_w, tag_h)
        if tag.picked:
            canvas.line_width = 2
            canvas.stroke_style = text_color_on(tag.color)
            canvas.stroke_rect(tag.x + 1, tag.y + 1, tag_w - 2, tag_h - 2)
        canvas.fill_style = text_color_on(tag.color)
        canvas.fill_text(tag.text, tag.x + 4, tag.y + 3)
