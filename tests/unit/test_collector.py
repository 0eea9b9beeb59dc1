"""The supervisor's garbage collector (``kernel/collector.py``): full collections are the loop's
steps, each walking what is not frozen, never the whole heap; cycles are still reclaimed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from occlum.kernel.collector import THRESHOLDS, Collector


class Cyclic:
    """An object in a reference cycle with itself: only the collector frees it."""

    __slots__ = ("__weakref__", "me", "payload")

    def __init__(self) -> None:
        self.me = self
        self.payload = [0]


@pytest.fixture
def full_collections() -> Iterator[list[int]]:
    """One entry per full collection begun."""
    seen: list[int] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            seen.append(1)

    gc.callbacks.append(callback)
    try:
        yield seen
    finally:
        gc.callbacks.remove(callback)


def test_full_collections_are_steps_over_what_is_not_frozen(full_collections: list[int]) -> None:
    before = gc.get_threshold()
    heap = [[i] for i in range(300_000)]  # what the boot made: it lives as long as the instance
    c = Collector()
    c.start()
    try:
        assert gc.get_threshold() == THRESHOLDS
        assert gc.get_freeze_count() >= len(heap)
        fulls_at_start = len(full_collections)
        kept: list[list[int]] = []
        dropped: weakref.WeakSet[Cyclic] = weakref.WeakSet()
        walked: list[int] = []
        for i in range(300_000):  # serving: objects that stay, and cycles that die
            kept.append([i])
            if i & 3 == 0:
                x = Cyclic()
                dropped.add(x)
                del x
            if i & 7 == 0 and c.due():  # the loop asks every 8 calls
                walked.append(len(gc.get_objects(2)))
                c.step()
        # every full collection was a step (none triggered by an allocation in a call), and
        # each walked a bounded part of a heap of 600 000 objects and more
        assert c.steps >= 5
        assert len(full_collections) - fulls_at_start == c.steps
        assert max(walked) < 120_000, walked
        # a long call (no turn of the loop in it) makes no full collection either
        fulls = len(full_collections)
        kept += [[i] for i in range(200_000)]
        assert len(full_collections) == fulls
        # the cycles that died were reclaimed (the young generations and the steps free them)
        c.step()
        assert len(dropped) < 1_000
    finally:
        c.stop()
        gc.unfreeze()
    assert gc.get_threshold() == before


def test_summary_counts_the_full_collections_outside_steps() -> None:
    c = Collector()
    c.start()
    try:
        c.step()
        gc.collect()  # not a step: an unplanned full collection
        summary = c.summary()
    finally:
        c.stop()
        gc.unfreeze()
    assert summary.startswith("collector: 1 steps, 1 unplanned full collections, longest "), summary
