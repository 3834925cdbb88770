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


_PROBE = """
import ctypes, sys
from keeper import memory

class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                 "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

lib = ctypes.CDLL("libc.so.6")
lib.mallinfo2.restype = Mallinfo2
if sys.argv[1] == "tuned":
    assert memory.tune() is True
big = bytearray(8 << 20)
del big  # a mapped block freed: glibc's dynamic threshold rises past 8 MiB
before = lib.mallinfo2().hblkhd
block = bytearray(1 << 20)
print(lib.mallinfo2().hblkhd - before >= 1 << 20)  # True: the 1 MiB block is a mapping of its own
"""


def _mapped_after_a_big_free(mode: str) -> bool:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


def test_tune_keeps_big_blocks_mapped_so_freeing_them_hands_them_back():
    import ctypes

    import pytest

    try:
        ctypes.CDLL("libc.so.6").mallinfo2  # noqa: B018 - glibc 2.33+
    except (OSError, AttributeError):
        pytest.skip("not glibc: malloc's threshold is glibc's")
    assert _mapped_after_a_big_free("plain") is False  # the dynamic threshold: from the heap, kept
    assert _mapped_after_a_big_free("tuned") is True  # fixed at 128 KiB: its own mapping
