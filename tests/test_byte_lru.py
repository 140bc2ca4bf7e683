"""ByteBoundedLRU: byte budget, LRU order, counters."""

from __future__ import annotations

from backend.byte_lru import ByteBoundedLRU


def test_evicts_least_recently_used_to_stay_within_budget():
    cache: ByteBoundedLRU[str] = ByteBoundedLRU(100)
    cache.put("a", "A", 40)
    cache.put("b", "B", 40)
    assert cache.get("a") == "A"  # a is now the most recent
    cache.put("c", "C", 40)
    assert cache.get("b") is None and cache.get("a") == "A" and cache.get("c") == "C"
    stats = cache.stats()
    assert stats.nbytes == 80 and stats.entries == 2 and stats.evictions == 1


def test_entry_larger_than_budget_is_not_stored_and_keeps_others():
    cache: ByteBoundedLRU[str] = ByteBoundedLRU(100)
    cache.put("a", "A", 60)
    assert cache.put("huge", "H", 101) is False
    assert cache.get("a") == "A" and cache.get("huge") is None


def test_replacing_a_key_recounts_its_bytes():
    cache: ByteBoundedLRU[str] = ByteBoundedLRU(100)
    cache.put("a", "A", 90)
    cache.put("a", "A2", 10)
    cache.put("b", "B", 90)
    assert cache.get("a") == "A2" and cache.stats().nbytes == 100


def test_hits_and_misses_are_counted_and_peek_is_not():
    cache: ByteBoundedLRU[int] = ByteBoundedLRU(10)
    cache.put("a", 1, 1)
    cache.get("a")
    cache.get("x")
    assert cache.peek("a") == 1 and cache.peek("x") is None
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (1, 1)


def test_zero_budget_stores_nothing():
    cache: ByteBoundedLRU[int] = ByteBoundedLRU(0)
    assert cache.put("a", 1, 1) is False and len(cache) == 0


def test_pop_removes_an_entry_and_frees_its_bytes():
    cache: ByteBoundedLRU[str] = ByteBoundedLRU(100)
    cache.put("a", "A", 60)
    assert cache.pop("a") == "A" and cache.pop("a") is None
    assert cache.stats().nbytes == 0
    assert cache.put("b", "B", 90)  # the popped entry's bytes are free again
