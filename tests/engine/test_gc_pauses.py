"""The collector's full pauses while a study runs: survivors of a full collection are frozen, later full
collections walk only what is new, and everything goes back to the collector when the last study ends."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from daskopt.engine.gc_pauses import _freeze_survivors, short_gc_pauses


class Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def clean_collector() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.enable()
    assert _freeze_survivors not in gc.callbacks


def test_what_exists_when_the_study_starts_is_collected_once_then_frozen():
    dead = Node()
    gone = weakref.ref(dead)
    del dead
    with short_gc_pauses() as managed:
        assert managed
        assert gone() is None  # a cycle from before the study: freed by the walk at the start
        assert gc.get_freeze_count() > 0


def test_a_full_collection_freezes_its_survivors_and_the_next_one_walks_only_new_objects():
    with short_gc_pauses() as managed:
        assert managed
        old = [Node() for _ in range(1000)]
        gc.collect()  # full: its survivors are frozen
        frozen = gc.get_freeze_count()
        assert frozen >= len(old)
        fresh = Node()
        gone = weakref.ref(fresh)
        del fresh
        gc.collect()  # walks what came since: the new cycle is freed, the old objects stay frozen
        assert gone() is None
        assert gc.get_freeze_count() >= frozen
        assert all(node.me is node for node in old)
    assert gc.get_freeze_count() == 0


def test_a_cycle_that_died_while_frozen_is_freed_once_the_study_ends():
    with short_gc_pauses():
        node = Node()
        gc.collect()  # node survives: frozen
        dead = weakref.ref(node)
        del node
        gc.collect()
        assert dead() is not None  # a frozen cycle waits for the study's end
    gc.collect()
    assert dead() is None


def test_nested_studies_keep_the_collector_managed_until_the_last_ends():
    with short_gc_pauses():
        with short_gc_pauses() as inner:
            assert inner
        assert _freeze_survivors in gc.callbacks
        gc.collect()
        assert gc.get_freeze_count() > 0
    assert _freeze_survivors not in gc.callbacks and gc.get_freeze_count() == 0


def test_a_process_that_froze_objects_itself_keeps_its_collector_as_it_was():
    keep = [Node() for _ in range(10)]
    gc.freeze()
    before = gc.get_freeze_count()
    with short_gc_pauses() as managed:
        assert not managed
        gc.collect()
        assert _freeze_survivors not in gc.callbacks
    assert gc.get_freeze_count() == before
    del keep


def test_a_disabled_collector_is_left_alone():
    gc.disable()
    with short_gc_pauses() as managed:
        assert not managed
        assert _freeze_survivors not in gc.callbacks
    assert not gc.isenabled()
