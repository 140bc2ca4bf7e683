"""A client bound to one of the server's models: every call names it, unless the caller names another.

The Label Studio plugin serves each project with the model configured for
it; binding keeps the plugin's code free of a ``model`` argument on every call.
"""

from __future__ import annotations

from typing import Any

from backend.api.answers import ImageInfo, ObjectMasks
from backend.api.priority import Priority
from backend.api.prompt import Prompt
from backend.client.base import ImageSource, SamClientBase


class ModelBoundClient(SamClientBase):
    """``inner`` with ``model`` as every call's default model.

    Args:
        inner: Any client.
        model: The served model's name; None keeps the server's default.
    """

    def __init__(self, inner: SamClientBase, model: str | None) -> None:
        self.inner = inner
        self.model = model

    def add_image(
        self, image: ImageSource, *, model: str | None = None, priority: Priority | str = Priority.INTERACTIVE
    ) -> ImageInfo:
        """See :meth:`SamClientBase.add_image`."""
        return self.inner.add_image(image, model=model or self.model, priority=priority)

    def predict(
        self, image_id: str, prompt: Prompt | None = None, *, model: str | None = None, **fields: Any
    ) -> list[ObjectMasks]:
        """See :meth:`SamClientBase.predict`."""
        chosen = model or self.model
        if prompt is None:  # the fields as keywords, as the caller gave them
            return self.inner.predict(image_id, model=chosen, **fields)
        return self.inner.predict(image_id, prompt, model=chosen, **fields)

    def automask(self, image_id: str, *, model: str | None = None, **params: Any) -> list[dict[str, Any]]:
        """See :meth:`SamClientBase.automask`."""
        return self.inner.automask(image_id, model=model or self.model, **params)

    def models(self) -> list[dict[str, Any]]:
        """See :meth:`SamClientBase.models`."""
        return self.inner.models()

    def ready(self) -> bool:
        """See :meth:`SamClientBase.ready`."""
        return self.inner.ready()
