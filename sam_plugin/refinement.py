"""One interactive request, read against the object the annotator is refining.

Label Studio sends each smart click alone (see :mod:`sam_plugin.interactive_sessions`).
The rules, in order:

1. A box, a text prompt or several regions at once form a complete prompt:
   a new object.
2. A background click refines the current object: its earlier clicks and box
   plus the new click, with the previous mask's logits as ``mask_input``.
   When the one mask that comes back still covers a background click (or
   misses a positive one), three candidates are asked for from the clicks
   alone (the previous mask, which the annotator is correcting, pulls the
   answer back towards itself) and the best-ranked one that respects every
   click is shown.
3. A positive click inside the current mask refines it the same way.
4. A positive click outside it is first segmented alone. When that mask
   overlaps the current one (the click found a part of the same object that
   the mask missed), the current object is refined with it; otherwise the
   click starts a new object, on another object.
5. With no current object, a background click alone is refused with a
   message that says what to do.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from backend.client.base import SamClientBase
from sam_plugin.controls.base import new_region_id
from sam_plugin.controls.prompt import InteractivePrompt
from sam_plugin.interactive import SegmentedObject, require_object, respects_clicks, segment
from sam_plugin.interactive_sessions import ObjectSession

SAME_OBJECT_OVERLAP = 0.1
"""A lone positive click's mask belongs to the current object when their overlap is at
least this fraction of the smaller of the two masks."""


@dataclass
class InteractiveAnswer:
    """The objects to show and the session to keep.

    Attributes:
        objects: The masks to return, one per object.
        session: The object now being refined (``None`` for several objects at once).
    """

    objects: list[SegmentedObject]
    session: ObjectSession | None


def _single_click(prompt: InteractivePrompt) -> bool:
    return len(prompt.points) == 1 and not prompt.boxes and not prompt.text


def _with_click(base: InteractivePrompt, click: InteractivePrompt) -> InteractivePrompt:
    """``base`` plus the click of ``click`` (the object's label stays ``base``'s); a repeated click adds nothing."""
    merged = copy.deepcopy(base)
    if (click.points[0], click.point_labels[0]) in zip(merged.points, merged.point_labels, strict=True):
        return merged
    merged.points.append(click.points[0])
    merged.point_labels.append(click.point_labels[0])
    if merged.label is None and click.point_labels[0] == 1:
        merged.label = click.label
    return merged


def _overlaps(mask: np.ndarray, session: ObjectSession) -> bool:
    current = session.mask()
    smaller = min(int(mask.sum()), int(current.sum()))
    if smaller == 0 or mask.shape != current.shape:
        return False
    return int(np.logical_and(mask, current).sum()) >= SAME_OBJECT_OVERLAP * smaller


def _refine(
    client: SamClientBase, image_id: str, session: ObjectSession, click: InteractivePrompt
) -> InteractiveAnswer:
    """The current object with one more click; three candidates are asked for when one mask ignores a click.

    A click the object already has changes nothing: its last answer is given again.
    """
    prompt = _with_click(session.prompt, click)
    if prompt.points == session.prompt.points:
        again = SegmentedObject(
            mask=session.mask(),
            score=session.score,
            label=session.label,
            prompt=session.prompt.as_record(),
            logits_id=session.logits_id,
        )
        return InteractiveAnswer(objects=[again], session=session)
    objects = segment(client, image_id, prompt, mask_input=session.logits_id)
    if objects and not respects_clicks(objects[0].mask, prompt):
        # the previous mask is what the annotator is correcting: ask from the clicks alone
        objects = segment(client, image_id, prompt, multimask=True)
    return _answer(image_id, prompt, objects, region_id=session.region_id)


def _answer(
    image_id: str, prompt: InteractivePrompt, objects: list[SegmentedObject], *, region_id: str | None = None
) -> InteractiveAnswer:
    if len(objects) != 1:
        return InteractiveAnswer(objects=objects, session=None)
    [obj] = objects
    session = ObjectSession.create(
        image_id=image_id,
        prompt=prompt,
        logits_id=obj.logits_id,
        mask=obj.mask,
        region_id=region_id or new_region_id(),
        score=obj.score,
        label=obj.label,
    )
    return InteractiveAnswer(objects=objects, session=session)


def answer_interactive(
    client: SamClientBase, image_id: str, prompt: InteractivePrompt, session: ObjectSession | None
) -> InteractiveAnswer:
    """Masks for one interactive request, following the module's rules.

    Args:
        client: The model server.
        image_id: The task image's id on the server.
        prompt: What this request carries, in pixels.
        session: The object being refined on this task, if any.

    Raises:
        InvalidInput: Background clicks only, and no object to refine.
    """
    current = session if session is not None and session.image_id == image_id else None
    if current is not None and _single_click(prompt):
        x, y = prompt.points[0]
        if prompt.point_labels[0] == 0 or current.contains(x, y):
            return _refine(client, image_id, current, prompt)
        alone = segment(client, image_id, prompt)
        if alone and _overlaps(alone[0].mask, current):
            return _refine(client, image_id, current, prompt)
        return _answer(image_id, prompt, alone)
    require_object(prompt)
    return _answer(image_id, prompt, segment(client, image_id, prompt))
