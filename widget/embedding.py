"""The image embedding, computed in a background thread so the notebook stays responsive."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from backend.api.answers import ImageInfo
from backend.api.errors import SamError
from backend.client.base import SamClientBase
from widget.ticker import TICK_SECONDS, Ticker


class EmbeddingJob:
    """Runs ``client.add_image(pixels)`` once in a daemon thread.

    Args:
        client: The model server client.
        pixels: ``HxWx3`` uint8 RGB image.
        model: The server's model to embed it with (None: the server's first).
        on_tick: Called every :data:`~widget.ticker.TICK_SECONDS` with the seconds elapsed, while it runs.
        on_done: Called once with ``(info, error, seconds)``: ``info`` on success,
            ``error`` (the exception ``add_image`` raised) on failure.
    """

    def __init__(
        self,
        client: SamClientBase,
        pixels: np.ndarray,
        *,
        model: str | None = None,
        on_tick: Callable[[float], None],
        on_done: Callable[[ImageInfo | None, BaseException | None, float], None],
    ) -> None:
        self.client = client
        self.pixels = pixels
        self.model = model
        self.on_tick = on_tick
        self.on_done = on_done
        self.error: BaseException | None = None
        self._finished = threading.Event()

    def start(self) -> EmbeddingJob:
        """Start the thread; returns self."""
        threading.Thread(target=self._run, name="sam-widget-embedding", daemon=True).start()
        return self

    @property
    def failure(self) -> BaseException | None:
        """The error the job finished with (``on_done`` has returned), else None."""
        return self.error if self._finished.is_set() else None

    @property
    def may_retry(self) -> bool:
        """True once the job has finished (``on_done`` has returned) with an error another try
        may not get: the server unreachable or busy (5xx), e.g. still loading the model. An
        unknown model or a refused image fails the same way every time."""
        error = self.failure
        return error is not None and (not isinstance(error, SamError) or error.status >= 500)

    def wait(self, timeout: float | None = None) -> None:
        """Block until ``on_done`` has returned; re-raise the embedding's error."""
        if not self._finished.wait(timeout):
            raise TimeoutError(f"the image embedding was not ready within {timeout} s")
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        info: ImageInfo | None = None
        ticker = Ticker(self.on_tick, interval=TICK_SECONDS).start()
        try:
            chosen = {} if self.model is None else {"model": self.model}
            info = self.client.add_image(self.pixels, **chosen)
        except Exception as exc:  # handed to on_done and re-raised by wait()
            self.error = exc
        finally:
            seconds = ticker.stop()
        try:
            self.on_done(info, self.error, seconds)
        finally:
            self._finished.set()
