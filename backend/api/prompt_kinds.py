"""The names of prompt kinds: what a model record lists, ``GET /v1/models`` and the OpenAPI
document state per model, and the server checks a request against.

One vocabulary for every family; a kind names what a request carries, not the
field's spelling (``mask_input`` is the kind ``mask``).
"""

from __future__ import annotations

POINTS = "points"
"""Clicks with labels (1 foreground, 0 background)."""
BOX = "box"
"""One XYXY box around one object."""
BOXES = "boxes"
"""Several boxes, one object each."""
MASK = "mask"
"""Low-res logits of an earlier answer, to refine it (the ``mask_input`` field)."""
TEXT = "text"
"""A noun phrase: CLIP ranks segment-everything candidates, or SAM 3 finds every instance."""
EXEMPLARS = "exemplars"
"""Boxes around examples, each positive or negative: SAM 3 finds every instance like the positives."""

CLICK_PROMPT_KINDS = (POINTS, BOX, BOXES, MASK)
"""Kinds that give one object's ranked candidate masks."""
CONCEPT_PROMPT_KINDS = (TEXT, EXEMPLARS)
"""Kinds SAM 3's detector answers with every instance of a concept."""

FIELD_KINDS = {
    "points": POINTS,
    "box": BOX,
    "boxes": BOXES,
    "mask_input": MASK,
    "text": TEXT,
    "exemplars": EXEMPLARS,
}
"""A :class:`~backend.api.prompt.Prompt` field -> the kind it carries."""
