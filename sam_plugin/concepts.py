"""Concept prompts on a SAM 3 model: a word and/or example boxes -> every instance, one region each.

SAM 3 answers a *concept* (a short text such as ``"car"``, and/or boxes around
examples and counter-examples of it) with every instance it finds in the
image, one object each, best score first. On a project served by such a model
(the model server lists ``exemplars`` among its prompts) the plugin reads:

* a TextArea text as the concept;
* a smart rectangle as an exemplar: positive, or a counter-example when its
  label is a background label (``SAM_NEGATIVE_LABELS``, an alias starting
  with ``-``), together with the concept the annotator typed last on the task
  (Label Studio sends each smart region alone, so the text is remembered per
  project, task and annotator, like the object being refined);
* clicks as today: ranked masks of one object, refined click by click.

Every instance becomes its own region, labelled with the concept where the
output control has that label, with its score and the concept in
``meta.text``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from backend.api.answers import ObjectMasks
from backend.api.errors import InvalidInput
from backend.byte_lru import ByteBoundedLRU
from backend.client.base import SamClientBase
from sam_plugin.controls.prompt import InteractivePrompt
from sam_plugin.interactive import SegmentedObject
from sam_plugin.interactive_sessions import DEFAULT_TTL_S, SessionKey
from sam_plugin.label_config import SamLabelConfig

MAX_CONCEPT_INSTANCES = 100
"""Instances kept per concept (best score first); SAM 3 may find up to 200."""

DEFAULT_THRESHOLD_TEXT = "the model server's default (0.5)"

_TEXT_STORE_BYTES = 4 * 1024 * 1024


class ConceptTextStore:
    """The concept text each annotator typed last on a task, forgotten after 15 minutes idle.

    Keys are those of :class:`~sam_plugin.interactive_sessions.SessionStore`
    (project, task, annotator); as there, a text typed before Label Studio
    named the annotator is adopted by the first named request on the task.

    Args:
        ttl_s: Idle seconds after which a text is forgotten.
        clock: Monotonic clock (tests pass a fake one).
    """

    def __init__(self, *, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] | None = None) -> None:
        self._ttl_s = ttl_s
        self._clock: Callable[[], float] = clock or time.monotonic
        self._texts: ByteBoundedLRU[tuple[str, float]] = ByteBoundedLRU(_TEXT_STORE_BYTES)
        self._lock = threading.Lock()

    def find(self, key: SessionKey) -> str | None:
        """The live text of ``key``; a named annotator adopts the task's unnamed text."""
        with self._lock:
            text = self._live(key)
            unnamed = (key[0], key[1], "")
            if text is None and key[2]:
                text = self._live(unnamed)
                if text is not None:
                    self._texts.pop(unnamed)
            if text is not None:
                self._put(key, text)
            return text

    def put(self, key: SessionKey, text: str) -> None:
        """Remember ``text`` as ``key``'s concept (replaces the previous one)."""
        with self._lock:
            self._put(key, text)

    def _put(self, key: SessionKey, text: str) -> None:
        self._texts.put(key, (text, self._clock()), len(text.encode()) + sum(len(k) for k in key) + 64)

    def _live(self, key: SessionKey) -> str | None:
        held = self._texts.get(key)
        if held is None:
            return None
        if self._clock() - held[1] > self._ttl_s:
            self._texts.pop(key)
            return None
        return held[0]


def concept_label(config: SamLabelConfig, text: str | None) -> str | None:
    """The output label named by a concept: equal to a label's value or alias, ignoring case; else None."""
    if not text:
        return None
    wanted = text.strip().casefold()
    for value in config.output.labels:
        alias = config.output.aliases.get(value)
        if value.casefold() == wanted or (alias is not None and alias.casefold() == wanted):
            return value
    return None


def instances(
    objects: list[ObjectMasks], *, label: str | None, prompt: dict[str, Any], concept: str | None
) -> list[SegmentedObject]:
    """The model server's instances of one concept, best score first, as objects to show.

    Instances with an empty mask are dropped; at most :data:`MAX_CONCEPT_INSTANCES` are kept.
    """
    found = [obj for obj in objects if len(obj.scores) > 0 and bool(np.any(obj.masks[0]))]
    found.sort(key=lambda obj: float(obj.scores[0]), reverse=True)
    return [
        SegmentedObject(
            mask=np.asarray(obj.masks[0], dtype=bool),
            score=float(obj.scores[0]),
            label=label,
            prompt=prompt,
            concept=concept,
        )
        for obj in found[:MAX_CONCEPT_INSTANCES]
    ]


def segment_concept(
    client: SamClientBase,
    image_id: str,
    prompt: InteractivePrompt,
    config: SamLabelConfig,
    *,
    text: str | None,
    threshold: float | None,
) -> list[SegmentedObject]:
    """Every instance of an interactive concept: the text and the prompt's boxes as exemplars.

    Args:
        client: The model server (bound to the project's SAM 3 model).
        image_id: The task image's id on the server.
        prompt: What the request carries (boxes become exemplars; no clicks).
        config: The labeling config (the output labels a concept may name).
        text: The concept: the prompt's text, else the one typed last on the task, if any.
        threshold: Keep instances scoring above this (None: the server's default).

    Raises:
        InvalidInput: Clicks sent together with a concept, only counter-example
            boxes and no text, or no instance found; each says what to do.
    """
    if prompt.points:
        raise InvalidInput(
            "on a SAM 3 model, a text or a smart box is a concept (every instance) and clicks outline one "
            "object: send the clicks in a request of their own"
        )
    exemplars = [{"box": [float(v) for v in b.box], "positive": b.positive} for b in prompt.boxes]
    if not text and not any(e["positive"] for e in exemplars):
        raise InvalidInput(
            "a box with a background label is a counter-example of a concept: type the concept in the "
            "text box first (or draw a box with an object label around an example)"
        )
    objects = client.predict(image_id, text=text or None, exemplars=exemplars or None, threshold=threshold)
    box_label = next((b.label for b in prompt.boxes if b.positive and b.label), None)
    label = concept_label(config, text) or box_label or text
    record = prompt.as_record()
    record["boxes"] = []
    record["text"] = text
    record["exemplars"] = exemplars
    found = instances(objects, label=label, prompt=record, concept=text)
    if not found:
        what = f"{text!r}" if text else "the boxed example"
        above = DEFAULT_THRESHOLD_TEXT if threshold is None else f"{threshold:g}"
        raise InvalidInput(
            f"SAM 3 found no instance of {what} scoring above {above}: try other words, draw a box around "
            "one example, or lower SAM_CONCEPT_THRESHOLD"
        )
    return found
