"""The server-wide budget of mask answers being built.

A prediction's masks are ``objects x candidates`` full-size bool arrays (one
byte a pixel), built on the model thread and then encoded by the HTTP
thread. One request is capped (``MAX_MASK_PIXELS``); this budget caps them
all together: a request reserves its answer's bytes before it is decoded
and holds them until its answer is encoded, and waits while others hold the
budget (503 after :data:`backend.memory_budget.DEFAULT_WAIT_S`). An answer
larger than the whole budget is refused with 413 and says how many boxes
fit. The Label Studio plugin's in-process client goes through
:class:`BudgetedClient`, so its predictions count too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from backend.api.answers import ImageInfo, ObjectMasks
from backend.api.errors import PayloadTooLarge, SamError
from backend.api.priority import Priority
from backend.api.prompt import Prompt
from backend.client.base import ImageSource, SamClientBase
from backend.memory_budget import MemoryBudget
from backend.serving.local_client import LocalSamClient
from backend.serving.service import SamService

BYTES_PER_MASK_PIXEL = 2
"""Reserved per pixel of every mask: the bool mask and its encoding's working copy."""


@contextlib.contextmanager
def reserve_answer(
    budget: MemoryBudget, service: SamService, image_id: str, prompt: Prompt, *, model: str | None = None
) -> Iterator[None]:
    """Hold a prediction's answer bytes in ``budget`` while the ``with`` block builds and encodes it.

    Args:
        budget: The server's budget of mask answers.
        service: The service that will answer.
        image_id: The image the prediction is for (unknown: nothing is reserved, the prediction fails).
        prompt: The prompt: one object per box (one with text), three candidates with multimask or text.
        model: The model that answers (default: the service's).

    Raises:
        PayloadTooLarge: The answer alone needs more than the whole budget.
        ServiceUnavailable: No room in the budget within its wait.
    """
    try:
        height, width = service.image_size(image_id, model=model)
    except SamError:  # unknown image or model, model not ready: the prediction itself reports it
        yield
        return
    objects = len(prompt.boxes) if prompt.boxes is not None and prompt.text is None else 1
    candidates = 3 if prompt.multimask or prompt.text is not None else 1
    per_object = candidates * width * height * BYTES_PER_MASK_PIXEL
    if objects * per_object > budget.capacity:
        most = budget.capacity // per_object
        advice = f"send at most {most} boxes per request" if most else "downscale the image"
        raise PayloadTooLarge(
            f"{objects} objects x {candidates} masks of {width}x{height} pixels need "
            f"{objects * per_object / 2**20:.0f} MiB, more than the server's budget for mask answers "
            f"({budget.capacity / 2**20:.0f} MiB, --answer-budget-mb); {advice}"
            + (" (or multimask=false)" if candidates > 1 else "")
        )
    with budget.reserve(objects * per_object):
        yield


class BudgetedClient(SamClientBase):
    """A :class:`LocalSamClient` whose predictions reserve their answer in the server's budget.

    Args:
        inner: The in-process client over the server's service.
        budget: The server's budget of mask answers.
    """

    def __init__(self, inner: LocalSamClient, budget: MemoryBudget) -> None:
        self._inner = inner
        self._budget = budget

    def add_image(
        self, image: ImageSource, *, model: str | None = None, priority: Priority | str = Priority.INTERACTIVE
    ) -> ImageInfo:
        """See :meth:`SamClientBase.add_image` (decodes reserve the decode budget themselves)."""
        return self._inner.add_image(image, model=model, priority=priority)

    def predict(
        self, image_id: str, prompt: Prompt | None = None, *, model: str | None = None, **fields: Any
    ) -> list[ObjectMasks]:
        """See :meth:`SamClientBase.predict`; waits while other answers hold the budget."""
        whole = Prompt.of(prompt, **fields)
        with reserve_answer(self._budget, self._inner.service, image_id, whole, model=model):
            return self._inner.predict(image_id, whole, model=model)

    def automask(self, image_id: str, *, model: str | None = None, **params: Any) -> list[dict[str, Any]]:
        """See :meth:`SamClientBase.automask`."""
        return self._inner.automask(image_id, model=model, **params)

    def models(self) -> list[dict[str, Any]]:
        """See :meth:`SamClientBase.models`."""
        return self._inner.models()

    def ready(self) -> bool:
        """See :meth:`SamClientBase.ready`."""
        return self._inner.ready()
