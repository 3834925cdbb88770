"""keeper.memory: the collector's thresholds and the freeze after a scan (bench/scale.py
measures what they save; here, that they are set and that cycles are still collected)."""

from __future__ import annotations

import gc

from keeper import memory


def test_tune_sets_the_thresholds_and_cycles_are_still_collected():
    before = gc.get_threshold()
    try:
        memory.tune()
        assert gc.get_threshold() == memory.GC_THRESHOLDS
        assert memory.GC_THRESHOLDS[0] > 700  # young collections rarer than CPython's default

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle: only the collector frees it
        gc.collect()
        del a, b
        assert gc.collect() >= 2  # the two nodes (and their dicts) found unreachable
    finally:
        gc.set_threshold(*before)


def test_release_freezes_what_is_kept_so_full_collections_skip_it():
    kept = [{"account": i} for i in range(1_000)]
    try:
        memory.release()
        assert gc.get_freeze_count() >= len(kept)
        gc.collect()
        assert all(d["account"] == i for i, d in enumerate(kept))  # frozen, not freed
    finally:
        gc.unfreeze()
