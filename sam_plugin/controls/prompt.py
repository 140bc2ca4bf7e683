"""The prompt collected from Label Studio's interactive context, in pixels.

Label Studio sends every smart region the annotator drew (``context.result``)
in percent of the image size. The per-tag converters
(:meth:`sam_plugin.controls.base.ControlConverter.to_prompt`) turn each into a
prompt part (:class:`PromptPoint`, :class:`PromptBox`, :class:`PromptText`) in
pixels of the original image, the frame the model server works in, and
:meth:`InteractivePrompt.add` collects them into one prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backend.api.errors import InvalidInput


@dataclass(frozen=True)
class PromptPoint:
    """One click.

    Attributes:
        x: Column in original-image pixels.
        y: Row in original-image pixels.
        positive: True for a foreground click, False for a background one.
        label: The click's KeyPointLabels value, if any (names the object when positive).
    """

    x: float
    y: float
    positive: bool
    label: str | None = None


@dataclass
class PromptBox:
    """One box prompt.

    Attributes:
        box: ``[x1, y1, x2, y2]`` in original-image pixels.
        label: The box's RectangleLabels value, if any.
        positive: False for a box with a background label: on a SAM 3 model it
            is a counter-example of the concept (other models ignore it).
    """

    box: list[float]
    label: str | None = None
    positive: bool = True


@dataclass(frozen=True)
class PromptText:
    """One text prompt (CLIP).

    Attributes:
        text: Non-blank text; several alternatives are joined with ``", "``.
        latest: The last of them (Label Studio's TextArea keeps every entry
            typed; a concept is the one typed last).
    """

    text: str
    latest: str = ""


PromptPart = PromptPoint | PromptBox | PromptText
"""What one Label Studio result becomes: a click, a box or a text."""


@dataclass
class InteractivePrompt:
    """Everything the annotator clicked, drew or typed for one object.

    Attributes:
        width: Image width in pixels (the frame of all coordinates).
        height: Image height in pixels.
        points: ``N`` click positions ``(x, y)`` in original-image pixels.
        point_labels: ``N`` ints, 1 = foreground, 0 = background.
        boxes: Box prompts; several boxes give several objects.
        text: Text prompt (CLIP), if any.
        latest_text: The text entry typed last, if any (a SAM 3 concept).
        label: Label of the first positive click (the object's class).
    """

    width: int
    height: int
    points: list[tuple[float, float]] = field(default_factory=list)
    point_labels: list[int] = field(default_factory=list)
    boxes: list[PromptBox] = field(default_factory=list)
    text: str | None = None
    latest_text: str | None = None
    label: str | None = None

    def add(self, part: PromptPart | None) -> None:
        """Add one prompt part; ``None`` (a result with nothing usable) adds nothing.

        A point becomes a click (label 1 when positive, 0 when background) and
        the first positive click's label names the object. Every box is kept.
        Texts are joined with ``", "``, the way a CLIP prompt lists alternatives.
        """
        if isinstance(part, PromptPoint):
            self.points.append((part.x, part.y))
            self.point_labels.append(1 if part.positive else 0)
            if part.positive and self.label is None:
                self.label = part.label
        elif isinstance(part, PromptBox):
            self.boxes.append(part)
        elif isinstance(part, PromptText):
            self.text = f"{self.text}, {part.text}" if self.text else part.text
            self.latest_text = part.latest or part.text

    @property
    def is_empty(self) -> bool:
        """True when nothing usable was sent."""
        return not self.points and not self.boxes and not self.text

    @property
    def multimask(self) -> bool:
        """Ask for three candidates only when one click leaves the object ambiguous."""
        return len(self.points) == 1 and not self.boxes

    def as_record(self) -> dict[str, Any]:
        """JSON-able description of the prompt, stored with accepted masks."""
        return {
            "points": [[float(x), float(y)] for x, y in self.points],
            "point_labels": [int(v) for v in self.point_labels],
            "boxes": [[float(v) for v in b.box] for b in self.boxes],
            "text": self.text,
        }


def check_not_rotated(item: dict[str, Any]) -> None:
    """Reject regions drawn on a rotated image or rotated themselves.

    Label Studio stores ``image_rotation`` (the annotator rotated the view)
    and ``value.rotation`` (a rotated rectangle). SAM prompts are axis-aligned
    in the image frame, so both must be 0.

    Raises:
        InvalidInput: A non-zero rotation, with the fix.
    """
    image_rotation = float(item.get("image_rotation") or 0)
    if abs(image_rotation) > 1e-6:
        raise InvalidInput(
            f"the image is rotated by {image_rotation:g} degrees in Label Studio; "
            "reset the rotation (rotate back to 0) before using SAM prompts"
        )
    rotation = float((item.get("value") or {}).get("rotation") or 0)
    if abs(rotation) > 1e-6:
        raise InvalidInput(
            f"region {item.get('id', '?')} is rotated by {rotation:g} degrees; "
            "SAM needs axis-aligned boxes: draw the box again without rotating it"
        )


def read_value(item: dict[str, Any], keys: tuple[str, ...]) -> dict[str, float]:
    """The numeric fields ``keys`` of ``item["value"]``.

    Raises:
        InvalidInput: A field is missing or not a finite number.
    """
    value = item.get("value") or {}
    out: dict[str, float] = {}
    for key in keys:
        raw: Any = value.get(key)
        try:
            number = float(raw)
        except (TypeError, ValueError):
            raise InvalidInput(
                f"region {item.get('id', '?')} of type {item.get('type')} has no numeric value.{key} (got {raw!r})"
            ) from None
        if number != number or number in (float("inf"), float("-inf")):
            raise InvalidInput(f"region {item.get('id', '?')}: value.{key} must be finite, got {raw!r}")
        out[key] = number
    return out


def first_label(item: dict[str, Any]) -> str | None:
    """The first label of a ``*labels`` region (``value[type]``), if any."""
    labels = (item.get("value") or {}).get(item.get("type", ""), [])
    return str(labels[0]) if labels else None
