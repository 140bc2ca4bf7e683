"""The object an annotator is refining, remembered between Label Studio's requests.

Label Studio's labeling page sends each smart keypoint *alone*, right after
the previous one (``context.result`` holds only the new click). A background
click therefore means nothing by itself: it refines the mask of the object
the annotator clicked or boxed just before. :class:`SessionStore` keeps, per
project, task and annotator, the prompts of that object, the id of its last
low-res logits on the model server and its mask (bit-packed), for a bounded
time and a bounded number of bytes.

Label Studio names the annotator only once a draft exists (``task.drafts[].user``),
so a session opened by an unnamed first click is adopted by the first named
request on the same task (:meth:`SessionStore.find`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from backend.byte_lru import ByteBoundedLRU
from sam_plugin.controls.prompt import InteractivePrompt

SessionKey = tuple[str, str, str]
"""``(project id, task id, annotator)``; the annotator is ``""`` while Label Studio does not name them."""

DEFAULT_TTL_S = 15 * 60.0
"""A session untouched for this long is forgotten: the next background click needs a new object."""

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""Packed masks of all sessions together stay under this (about 45 sessions of 12-megapixel images)."""


@dataclass
class ObjectSession:
    """One object being refined.

    Attributes:
        image_id: The model server's image id the prompts refer to.
        prompt: Every click and box given for the object so far, in pixels.
        logits_id: Low-res logits of the object's last best mask (``mask_input`` of the next request).
        mask_bits: The last best mask, ``np.packbits`` of the ``HxW`` bool array (row-major).
        shape: ``(H, W)`` of the mask.
        region_id: Label Studio region id of the object's mask, kept across refinements.
        score: Predicted IoU of the last mask.
        label: The object's label.
        model: The served model whose logits ``logits_id`` names (None: the server's default).
        touched: ``time.monotonic()`` of the last use.
    """

    image_id: str
    prompt: InteractivePrompt
    logits_id: str | None
    mask_bits: np.ndarray
    shape: tuple[int, int]
    region_id: str
    score: float = 0.0
    label: str | None = None
    model: str | None = None
    touched: float = field(default_factory=time.monotonic)

    @classmethod
    def create(
        cls,
        *,
        image_id: str,
        prompt: InteractivePrompt,
        logits_id: str | None,
        mask: np.ndarray,
        region_id: str,
        score: float = 0.0,
        label: str | None = None,
    ) -> ObjectSession:
        """A session for ``mask`` (``HxW`` bool), the answer to ``prompt``."""
        return cls(
            score=score,
            label=label,
            image_id=image_id,
            prompt=prompt,
            logits_id=logits_id,
            mask_bits=np.packbits(np.asarray(mask, dtype=bool), axis=None),
            shape=(int(mask.shape[0]), int(mask.shape[1])),
            region_id=region_id,
        )

    @property
    def nbytes(self) -> int:
        """Bytes the session holds (the packed mask dominates)."""
        return int(self.mask_bits.nbytes) + 512

    def mask(self) -> np.ndarray:
        """The last best mask, ``HxW`` bool."""
        count = self.shape[0] * self.shape[1]
        return np.unpackbits(self.mask_bits, count=count).astype(bool).reshape(self.shape)

    def contains(self, x: float, y: float) -> bool:
        """Whether pixel ``(x, y)`` (original-image pixels) lies in the last mask."""
        col, row = int(x), int(y)
        height, width = self.shape
        if not (0 <= row < height and 0 <= col < width):
            return False
        index = row * width + col
        return bool((self.mask_bits[index >> 3] >> (7 - (index & 7))) & 1)


class SessionStore:
    """Thread-safe sessions, bounded by idle time and by total bytes (least recently used go first).

    Args:
        ttl_s: Idle seconds after which a session is forgotten.
        max_bytes: Total bytes of all sessions.
        clock: Monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._ttl_s = ttl_s
        self._clock: Callable[[], float] = clock or time.monotonic
        self._sessions: ByteBoundedLRU[ObjectSession] = ByteBoundedLRU(max_bytes)
        self._lock = threading.Lock()

    def find(self, key: SessionKey) -> ObjectSession | None:
        """The live session of ``key``; a named annotator adopts the task's unnamed session."""
        with self._lock:
            session = self._live(key)
            unnamed = (key[0], key[1], "")
            if session is None and key[2]:
                session = self._live(unnamed)
                if session is not None:
                    self._sessions.pop(unnamed)
                    self._sessions.put(key, session, session.nbytes)
            if session is not None:
                session.touched = self._clock()
            return session

    def put(self, key: SessionKey, session: ObjectSession) -> None:
        """Remember ``session`` as the object ``key`` is refining (replaces the previous one)."""
        session.touched = self._clock()
        with self._lock:
            if not self._sessions.put(key, session, session.nbytes):
                self._sessions.pop(key)  # larger than the whole budget: not kept, nor the one it replaces

    def forget(self, key: SessionKey) -> None:
        """Drop ``key``'s session (its last request answered several objects at once)."""
        with self._lock:
            self._sessions.pop(key)

    def __len__(self) -> int:
        return len(self._sessions)

    def _live(self, key: SessionKey) -> ObjectSession | None:
        """``key``'s session unless it has been idle longer than the TTL (then it is dropped)."""
        session = self._sessions.get(key)
        if session is not None and self._clock() - session.touched > self._ttl_s:
            self._sessions.pop(key)
            return None
        return session
