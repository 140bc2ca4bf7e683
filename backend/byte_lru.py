"""The one least-recently-used store of the project: thread-safe, bounded in bytes, torch-free.

Every cache uses it: the server's encoded images, pixels, refinement logits
and segment-everything records (:mod:`backend.serving.stores`), text
embeddings of the CLIP ranker and of SAM 3, and the Label Studio plugin's
downloaded images and answers. Each entry declares its own size; inserting
past the budget evicts the least recently used entries first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")


@dataclass(frozen=True)
class CacheStats:
    """Counters of one store since it was created.

    Attributes:
        hits: Lookups that found their key.
        misses: Lookups that did not.
        evictions: Entries dropped to stay within the byte budget.
        entries: Entries held now.
        nbytes: Bytes held now.
        capacity_bytes: The byte budget.
    """

    hits: int
    misses: int
    evictions: int
    entries: int
    nbytes: int
    capacity_bytes: int


class ByteBoundedLRU(Generic[V]):
    """LRU mapping whose total declared size never exceeds ``capacity_bytes``.

    An entry larger than the whole budget is not stored (``put`` returns
    False), so one huge image cannot flush everything else.
    """

    def __init__(self, capacity_bytes: int) -> None:
        """Create an empty store.

        Args:
            capacity_bytes: Budget in bytes; 0 disables storage.
        """
        if capacity_bytes < 0:
            raise ValueError("capacity_bytes must be >= 0")
        self._capacity = capacity_bytes
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._nbytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        """The value for ``key`` (marked most recently used), or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self._misses += 1
                return None
            self._items.move_to_end(key)
            self._hits += 1
            return item[0]

    def peek(self, key: Hashable) -> V | None:
        """The value for ``key``, or None, without touching order or counters (a look, not a use)."""
        with self._lock:
            item = self._items.get(key)
            return None if item is None else item[0]

    def put(self, key: Hashable, value: V, nbytes: int) -> bool:
        """Store ``value`` under ``key``, evicting old entries as needed.

        Args:
            key: Any hashable key; an existing entry is replaced.
            value: The object to keep.
            nbytes: Its size in bytes, as counted against the budget.

        Returns:
            False when the entry alone exceeds the budget (nothing stored).
        """
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._nbytes -= old[1]
            if nbytes > self._capacity:
                return False
            while self._items and self._nbytes + nbytes > self._capacity:
                _, (_, dropped) = self._items.popitem(last=False)
                self._nbytes -= dropped
                self._evictions += 1
            self._items[key] = (value, nbytes)
            self._nbytes += nbytes
            return True

    def pop(self, key: Hashable) -> V | None:
        """Remove ``key`` and return its value, or None (counters untouched)."""
        with self._lock:
            item = self._items.pop(key, None)
            if item is None:
                return None
            self._nbytes -= item[1]
            return item[0]

    def clear(self) -> None:
        """Drop every entry (counters are kept)."""
        with self._lock:
            self._items.clear()
            self._nbytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def stats(self) -> CacheStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                entries=len(self._items),
                nbytes=self._nbytes,
                capacity_bytes=self._capacity,
            )
