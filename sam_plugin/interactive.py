"""Interactive labeling: Label Studio context -> pixel prompt -> masks.

Label Studio sends the smart regions the annotator drew as
``context["result"]``. Each region goes to the converter of its tag; the
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
from sam_plugin.controls import keypoint_labels, rectangle_labels, text_area
from sam_plugin.controls.prompt import InteractivePrompt
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
    """

    mask: np.ndarray
    score: float
    label: str | None
    prompt: dict[str, Any]
    logits_id: str | None = None


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
        kind = item.get("type")
        if kind == keypoint_labels.RESULT_TYPE:
            keypoint_labels.add_keypoint(
                prompt, item, controls.get(str(item.get("from_name"))), negative_labels
            )
        elif kind == rectangle_labels.RESULT_TYPE:
            rectangle_labels.add_rectangle(prompt, item)
        elif kind == text_area.RESULT_TYPE:
            text_area.add_text(prompt, item)
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
    points = [list(p) for p in prompt.points] or None
    labels = list(prompt.point_labels) or None
    if len(prompt.boxes) > 1:
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
        box_labels = [b.label or prompt.label for b in prompt.boxes]
        records = []
        for prompt_box in prompt.boxes:
            record = prompt.as_record()
            record["boxes"] = [list(prompt_box.box)]
            records.append(record)
    else:
        box = prompt.boxes[0].box if prompt.boxes else None
        objects = client.predict(
            image_id,
            points=points,
            labels=labels,
            box=box,
            mask_input=mask_input,
            text=prompt.text,
            multimask=prompt.multimask if multimask is None else multimask,
        )
        box_labels = [(prompt.boxes[0].label if prompt.boxes else None) or prompt.label] * len(objects)
        records = [prompt.as_record()] * len(objects)
    out = []
    for obj, label, record in zip(objects, box_labels, records, strict=True):
        if len(obj.scores) == 0:
            continue
        index = _pick(obj, prompt)
        out.append(
            SegmentedObject(
                mask=np.asarray(obj.masks[index], dtype=bool),
                score=float(obj.scores[index]),
                label=label,
                prompt=record,
                logits_id=obj.logits_id if index == 0 else None,  # the server keeps the top one's logits only
            )
        )
    return out
