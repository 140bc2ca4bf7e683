"""TextArea -> CLIP text prompt (as in Label Studio's grounding examples)."""

from __future__ import annotations

from typing import Any

from sam_plugin.controls.prompt import InteractivePrompt

RESULT_TYPE = "textarea"


def add_text(prompt: InteractivePrompt, item: dict[str, Any]) -> None:
    """Use the text of a ``textarea`` result as the text prompt.

    Several lines (or several TextArea results) are joined with ", ", the
    way a CLIP prompt lists alternatives; blank text is ignored.

    Args:
        prompt: Receives ``text``.
        item: ``{"type": "textarea", "value": {"text": ["a red car"]}}``.
    """
    texts = (item.get("value") or {}).get("text") or []
    if isinstance(texts, str):
        texts = [texts]
    parts = [str(t).strip() for t in texts if str(t).strip()]
    if prompt.text:
        parts.insert(0, prompt.text)
    if parts:
        prompt.text = ", ".join(parts)
