"""The image embedding, computed in a background thread so the notebook stays responsive."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from backend.client.base import ImageInfo, SamClientBase

TICK_SECONDS = 0.25


class EmbeddingJob:
    """Runs ``client.add_image(pixels)`` once in a daemon thread.

    Args:
        client: The model server client.
        pixels: ``HxWx3`` uint8 RGB image.
        on_tick: Called every :data:`TICK_SECONDS` with the seconds elapsed, while it runs.
        on_done: Called once with ``(info, error, seconds)``: ``info`` on success,
            ``error`` (the exception ``add_image`` raised) on failure.
    """

    def __init__(
        self,
        client: SamClientBase,
        pixels: np.ndarray,
        *,
        on_tick: Callable[[float], None],
        on_done: Callable[[ImageInfo | None, BaseException | None, float], None],
    ) -> None:
        self.client = client
        self.pixels = pixels
        self.on_tick = on_tick
        self.on_done = on_done
        self.error: BaseException | None = None
        self._finished = threading.Event()

    def start(self) -> EmbeddingJob:
        """Start the thread; returns self."""
        threading.Thread(target=self._run, name="sam-widget-embedding", daemon=True).start()
        return self

    def wait(self, timeout: float | None = None) -> None:
        """Block until ``on_done`` has returned; re-raise the embedding's error."""
        if not self._finished.wait(timeout):
            raise TimeoutError(f"the image embedding was not ready within {timeout} s")
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        start = time.perf_counter()
        done = threading.Event()
        ticker = threading.Thread(target=self._tick, args=(start, done), daemon=True)
        ticker.start()
        info: ImageInfo | None = None
        try:
            info = self.client.add_image(self.pixels)
        except Exception as exc:  # handed to on_done and re-raised by wait()
            self.error = exc
        finally:
            done.set()
            ticker.join()
        try:
            self.on_done(info, self.error, time.perf_counter() - start)
        finally:
            self._finished.set()

    def _tick(self, start: float, done: threading.Event) -> None:
        while not done.wait(TICK_SECONDS):
            self.on_tick(time.perf_counter() - start)
