"""The daemon's collector settings: startup objects frozen, the youngest generation collected less
often, and garbage cycles still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from jobd.daemon import GC_YOUNG_THRESHOLD, settle_heap


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_startup_objects_are_frozen_and_young_collections_are_rarer() -> None:
    older = gc.get_threshold()[1:]
    settle_heap()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *older)
    assert gc.isenabled()


@pytest.mark.usefixtures("restored_collector")
def test_a_cycle_made_afterwards_is_still_collected() -> None:
    settle_heap()
    first, second = Node(), Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    del first, second
    collections = gc.get_stats()[0]["collections"]
    kept = [[] for _ in range(GC_YOUNG_THRESHOLD * 2)]  # allocations enough for one collection
    assert gc.get_stats()[0]["collections"] > collections
    assert gone() is None
    assert len(kept) == GC_YOUNG_THRESHOLD * 2
