"""Interactive labeling: Label Studio context -> pixel prompt -> masks.

Label Studio sends the smart regions the annotator drew as
``context["result"]``. Each region goes to the converter of its tag
(:func:`sam_plugin.controls.registry.prompt_converter_for`); the
resulting :class:`InteractivePrompt` is sent to the model server as one
request, and every object it returns becomes one output region.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.api.answers import ObjectMasks
from backend.api.errors import InvalidInput, SamError
from backend.client.base import SamClientBase
from sam_plugin.controls.prompt import InteractivePrompt
from sam_plugin.controls.registry import prompt_converter_for
from sam_plugin.label_config import SamLabelConfig


@dataclass
class SegmentedObject:
    """One mask for one prompted object.

    Attributes:
        mask: ``HxW`` bool, original-image pixels.
        score: Predicted IoU of the mask.
        label: The object's label (from its box or first positive click).
        prompt: JSON-able record of the prompt that produced it.
        logits_id: Model-server id of the mask's low-res logits (``mask_input`` to refine it).
        concept: The concept text of a SAM 3 instance (shown as the region's ``meta.text``), else None.
    """

    mask: np.ndarray
    score: float
    label: str | None
    prompt: dict[str, Any]
    logits_id: str | None = None
    concept: str | None = None


def collect_prompt(
    results: Sequence[dict[str, Any]],
    config: SamLabelConfig,
    *,
    width: int,
    height: int,
    negative_labels: Collection[str],
) -> InteractivePrompt:
    """Convert the context's regions into one pixel prompt.

    Regions of other types (a brush stroke, a previous mask) are ignored.

    Args:
        results: ``context["result"]`` from Label Studio.
        config: The parsed labeling config (control aliases).
        width: Image width in pixels (the model server's, EXIF applied).
        height: Image height in pixels.
        negative_labels: Keypoint labels meaning "background".

    Raises:
        InvalidInput: A malformed or rotated region, or no usable prompt.
    """
    prompt = InteractivePrompt(width=width, height=height)
    controls = config.prompt_controls
    for item in results:
        if not isinstance(item, dict):
            raise InvalidInput(f"context.result items must be objects, got {type(item).__name__}")
        converter = prompt_converter_for(item)
        if converter is None:
            continue
        part = converter.to_prompt(
            item,
            width=width,
            height=height,
            control=controls.get(str(item.get("from_name"))),
            negative_labels=negative_labels,
        )
        prompt.add(part)
    if prompt.is_empty:
        raise InvalidInput(
            "the request carries no SAM prompt: place a smart keypoint, draw a smart rectangle or type a text prompt"
        )
    return prompt


def require_object(prompt: InteractivePrompt) -> None:
    """Refuse a prompt that names no object: background clicks with no object to refine.

    Raises:
        InvalidInput: Only negative clicks, and no earlier object to refine.
    """
    if prompt.points and 1 not in prompt.point_labels and not prompt.boxes and not prompt.text:
        raise InvalidInput(
            "a background click refines the mask of your last object, and there is none on this task "
            "(it expires after 15 minutes idle): click the object with a positive label or draw a box first"
        )


def respects_clicks(mask: np.ndarray, prompt: InteractivePrompt) -> bool:
    """Whether ``mask`` (``HxW`` bool) holds every positive click and none of the background clicks."""
    height, width = mask.shape
    for (x, y), label in zip(prompt.points, prompt.point_labels, strict=True):
        row, col = min(max(int(y), 0), height - 1), min(max(int(x), 0), width - 1)
        if bool(mask[row, col]) != (label == 1):
            return False
    return True


def _pick(obj: ObjectMasks, prompt: InteractivePrompt) -> int:
    """Index of the best-ranked candidate that respects the clicks (0 when none does)."""
    for index in range(len(obj.masks)):
        if respects_clicks(obj.masks[index], prompt):
            return index
    return 0


_Asked = list[tuple[ObjectMasks, str | None, dict[str, Any]]]
"""What the model server answered, per object: its candidates, its label, the record of its prompt."""


def segment(
    client: SamClientBase,
    image_id: str,
    prompt: InteractivePrompt,
    *,
    mask_input: str | None = None,
    multimask: bool | None = None,
) -> list[SegmentedObject]:
    """Ask the model server for the masks of a prompt: one object per box, else one.

    Of each object's ranked candidates, the best-ranked one that holds every
    positive click and no background click is kept (the top one when none
    does), with its predicted IoU.

    Args:
        client: The model server.
        image_id: The task image's id on the server.
        prompt: Clicks, boxes or text in pixels.
        mask_input: ``logits_id`` of the object's previous mask, when refining it.
        multimask: Ask for three candidates; default: only for one lone click (``prompt.multimask``).
    """
    if len(prompt.boxes) > 1:
        asked = _predict_one_object_per_box(client, image_id, prompt)
    else:
        wanted = prompt.multimask if multimask is None else multimask
        asked = _predict_one_object(client, image_id, prompt, mask_input=mask_input, multimask=wanted)
    return [
        _best_candidate(obj, label, record, prompt) for obj, label, record in asked if len(obj.scores) > 0
    ]


def _point_lists(prompt: InteractivePrompt) -> tuple[list[list[float]] | None, list[int] | None]:
    """The prompt's clicks and their labels as the client takes them (``None`` when there are none)."""
    return [list(p) for p in prompt.points] or None, list(prompt.point_labels) or None


def _predict_one_object_per_box(client: SamClientBase, image_id: str, prompt: InteractivePrompt) -> _Asked:
    """One request for several boxes: one object per box, each with the clicks and text, one candidate each."""
    points, labels = _point_lists(prompt)
    objects = client.predict(
        image_id,
        points=points,
        labels=labels,
        boxes=[b.box for b in prompt.boxes],
        text=prompt.text,
        multimask=False,
    )
    if len(objects) != len(prompt.boxes):
        raise SamError(f"the model server returned {len(objects)} objects for {len(prompt.boxes)} boxes")
    asked: _Asked = []
    for obj, prompt_box in zip(objects, prompt.boxes, strict=True):
        record = prompt.as_record()
        record["boxes"] = [list(prompt_box.box)]
        asked.append((obj, prompt_box.label or prompt.label, record))
    return asked


def _predict_one_object(
    client: SamClientBase,
    image_id: str,
    prompt: InteractivePrompt,
    *,
    mask_input: str | None,
    multimask: bool,
) -> _Asked:
    """One request for the one object of the clicks, the box (at most one) and the text."""
    points, labels = _point_lists(prompt)
    box = prompt.boxes[0].box if prompt.boxes else None
    objects = client.predict(
        image_id,
        points=points,
        labels=labels,
        box=box,
        mask_input=mask_input,
        text=prompt.text,
        multimask=multimask,
    )
    label = (prompt.boxes[0].label if prompt.boxes else None) or prompt.label
    record = prompt.as_record()
    return [(obj, label, record) for obj in objects]


def _best_candidate(
    obj: ObjectMasks, label: str | None, record: dict[str, Any], prompt: InteractivePrompt
) -> SegmentedObject:
    """The object's best-ranked candidate that respects the clicks (see :func:`_pick`)."""
    index = _pick(obj, prompt)
    return SegmentedObject(
        mask=np.asarray(obj.masks[index], dtype=bool),
        score=float(obj.scores[index]),
        label=label,
        prompt=record,
        logits_id=obj.logits_id if index == 0 else None,  # the server keeps the top one's logits only
    )
