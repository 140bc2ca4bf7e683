"""Stop a training run cleanly on Ctrl-C (SIGINT) or SIGTERM.

The first signal only asks the loop to stop: it finishes the step it is in,
saves the training state at that step and returns, so the same command
resumes at exactly that step. A second signal stops at once (Python's
``KeyboardInterrupt``); the run then resumes from its last periodic
checkpoint.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """A flag set by the first SIGINT / SIGTERM while the ``with`` block runs.

    Handlers are installed only in the main thread (Python delivers signals
    there); elsewhere the flag is never set and signals act as before. The
    previous handlers come back when the block ends.

    Example::

        with StopRequest() as stop:
            result = train(..., should_stop=stop.is_set)
        if result.stopped:
            sys.exit(stop.exit_status)

    Args:
        label: Name printed with the "stopping" notice (the command).
    """

    def __init__(self, label: str = "sam-train") -> None:
        self.label = label
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"\n{self.label}: {signal.Signals(signum).name}: finishing the current step, then saving the "
            "training state (send it again to stop at once, back to the last periodic checkpoint)",
            file=sys.stderr,
            flush=True,
        )

    def is_set(self) -> bool:
        """True once a stop signal arrived."""
        return self.signum is not None

    @property
    def exit_status(self) -> int:
        """The shell's status for death by that signal: 128 + its number (130 for SIGINT)."""
        return 128 + (self.signum or signal.SIGINT)
