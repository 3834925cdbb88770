"""Hand freed heap memory back to the OS after a big transient (discovery, a full scan).

CPython returns freed objects to glibc's malloc, which keeps the freed pages of its heap
for reuse: a keeper whose full scan once needed tens of MiB more than its steady state
would keep them for good (bench/scale.py: 121 MiB after the first scan of 15,000
positions, 99 MiB after ``release``). ``malloc_trim(0)`` gives them back. glibc only;
elsewhere it does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name or "libc.so.6")
        lib.malloc_trim  # noqa: B018 - glibc has it; musl and others do not
    except (OSError, AttributeError):
        return None
    return lib


def release() -> bool:
    """``malloc_trim(0)``; True when memory was handed back."""
    lib = _libc()
    return bool(lib.malloc_trim(0)) if lib is not None else False
