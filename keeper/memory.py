"""Hand freed heap memory back to the OS after a big transient (discovery, a full scan).

CPython returns freed objects to glibc's malloc, which keeps the freed pages of its heap
for reuse: a keeper whose full scan once needed tens of MiB more than its steady state
would keep them for good (bench/scale.py: 121 MiB after the first scan of 15,000
positions, 99 MiB after ``release``). ``malloc_trim(0)`` gives them back. glibc only;
elsewhere it does nothing and says so.

Also the garbage collector (``tune``, and ``gc.freeze`` in ``release``): CPython's cycle
collector walks every tracked object it keeps in each full collection, and keeper keeps
millions of them at 100,000 positions.

And malloc's mmap threshold (``tune``): glibc serves a big block (a JSON answer of a scan,
the table of a dict or list of 100,000 entries as it grows) with its own mapping, handed back
when freed, but its threshold is dynamic: each such block freed raises it (up to 32 MiB), and
from then on big blocks come from the heap, whose freed pages stay in RSS. Fixed at 128 KiB
(``mallopt``) they stay mappings: at 100,002 positions (bench/scale.py) the first scan's RSS
high-water went 325 -> 284-286 MiB, RSS after it 325 -> 241 MiB before any ``malloc_trim``,
and the end of the run 375 -> 289 MiB, the scan as fast.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc

GC_THRESHOLDS = (100_000, 50, 100)  # gc.set_threshold: young, middle, full (``tune``)
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD = 128 * 1024  # glibc's initial value, fixed (``tune``)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name or "libc.so.6")
        lib.malloc_trim  # noqa: B018 - glibc has it; musl and others do not
    except (OSError, AttributeError):
        return None
    return lib


def tune() -> bool:
    """The garbage collector set for a process that keeps ~10 objects per position for good
    and makes many short-lived ones per block: collections of the young generations every
    100,000 allocations instead of 700, full ones 50 x 100 of them apart (and, as always,
    only once what was added since the last is a quarter of what it keeps). With the default
    thresholds, 150,000 positions (bench/scale.py) paid ~3.7 s of full collections in the
    first scan, 2.7-4 s in each later one, and ~50 ms of young ones per block with a price
    move: one landing in a block tick held it up that long. Reference cycles are still
    collected, only less often. Then malloc's mmap threshold (see above); True when set
    (glibc), False elsewhere."""
    gc.set_threshold(*GC_THRESHOLDS)
    lib = _libc()
    return lib is not None and hasattr(lib, "mallopt") and lib.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1


def release() -> bool:
    """After a big transient: ``gc.freeze()`` (what is kept now leaves the collector's full
    passes: they walk only what came after) and ``malloc_trim(0)``; True when memory was
    handed back."""
    gc.freeze()
    lib = _libc()
    return bool(lib.malloc_trim(0)) if lib is not None else False
