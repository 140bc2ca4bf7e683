"""TextArea -> CLIP text prompt (as in Label Studio's grounding examples)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sam_plugin.controls.base import ControlConverter, ControlInfo
from sam_plugin.controls.prompt import PromptText


class TextAreaConverter(ControlConverter):
    """``<TextArea>``: the typed text is the text prompt. Carries no mask."""

    tag = "TextArea"
    result_type = "textarea"
    gives_prompt = True
    prompt_hint = "<TextArea> (text prompt)"

    def to_prompt(
        self,
        result: dict[str, Any],
        *,
        width: int,
        height: int,
        control: ControlInfo | None = None,
        negative_labels: Collection[str] = (),
    ) -> PromptText | None:
        """The text of one ``textarea`` result; ``None`` when it is blank.

        Several lines are joined with ", ", the way a CLIP prompt lists
        alternatives (:meth:`InteractivePrompt.add` joins several results the
        same way); blank lines are ignored.

        Args:
            result: ``{"type": "textarea", "value": {"text": ["a red car"]}}``.
            width: Unused (text has no coordinates).
            height: Unused.
            control: Unused.
            negative_labels: Unused.
        """
        texts = (result.get("value") or {}).get("text") or []
        if isinstance(texts, str):
            texts = [texts]
        parts = [str(t).strip() for t in texts if str(t).strip()]
        return PromptText(", ".join(parts), latest=parts[-1]) if parts else None
