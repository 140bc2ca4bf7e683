"""SessionStore: bounded by idle time and bytes; a named annotator adopts the unnamed session."""

from __future__ import annotations

import numpy as np

from sam_plugin.controls.prompt import InteractivePrompt
from sam_plugin.interactive_sessions import ObjectSession, SessionStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def session(height: int = 40, width: int = 60) -> ObjectSession:
    mask = np.zeros((height, width), dtype=bool)
    mask[10:20, 5:25] = True
    return ObjectSession.create(
        image_id="img",
        prompt=InteractivePrompt(width=width, height=height),
        logits_id="l",
        mask=mask,
        region_id="r",
    )


def test_mask_round_trips_and_contains_reads_pixels() -> None:
    one = session()
    assert one.mask()[10:20, 5:25].all() and one.mask().sum() == 200
    assert one.contains(5.0, 10.0) and one.contains(24.9, 19.9)
    assert not one.contains(25.0, 10.0) and not one.contains(-1.0, 12.0) and not one.contains(10.0, 400.0)


def test_idle_sessions_expire() -> None:
    clock = FakeClock()
    store = SessionStore(ttl_s=60, clock=clock)
    store.put(("p", "t", ""), session())
    clock.now = 59
    assert store.find(("p", "t", "")) is not None  # a use renews it
    clock.now = 118
    assert store.find(("p", "t", "")) is not None
    clock.now = 179
    assert store.find(("p", "t", "")) is None


def test_total_bytes_stay_under_the_budget_least_recent_first() -> None:
    per_session = session(400, 600).nbytes
    store = SessionStore(max_bytes=3 * per_session)
    for task in "abcd":
        store.put(("p", task, ""), session(400, 600))
    assert len(store) == 3
    assert store.find(("p", "a", "")) is None and store.find(("p", "d", "")) is not None


def test_a_named_annotator_adopts_the_unnamed_session_of_the_task() -> None:
    store = SessionStore()
    store.put(("p", "t", ""), session())
    assert store.find(("p", "t", "ann")) is not None
    assert store.find(("p", "t", "")) is None
    assert store.find(("p", "t", "bob")) is None
