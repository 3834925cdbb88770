"""Reads ahead of their reader, a few at a time.

A scan reads every account in parts (about 1,000 accounts a request) while it computes the
parts already read. Started all at once, every part is read and decoded long before the
scan's math gets to it: at 100,000 positions the decoded parts waiting in memory added
~80 MiB to keeper's RSS during the safety-net scan (bench/scale.py). ``ahead`` starts a new
part only as the caller takes one, so at most ``window`` parts are read ahead::

    async for part in ahead([partial(read, chunk) for chunk in chunks]):
        ...  # compute this part while the next ones are read
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")

# parts read ahead of the caller. bench/scale.py at 100,002 positions, RSS high-water of the
# safety-net scan: all at once 370 MiB, 4 ahead 307, 2 ahead 298; the scans as fast with 2
WINDOW = 2


async def ahead(reads: Iterable[Callable[[], Awaitable[T]]], window: int = WINDOW) -> AsyncIterator[T]:
    """The results of ``reads``, in the order they complete, with at most ``window`` of them
    started and not yet taken by the caller. An error is raised to the caller; the reads
    still running are then cancelled (so are they when the caller stops early)."""
    if window < 1:
        raise ValueError("window must be at least 1")
    todo = iter(reads)
    running: set[asyncio.Future[T]] = set()
    try:
        for read in todo:
            running.add(asyncio.ensure_future(read()))
            if len(running) == window:
                break
        while running:
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                nxt = next(todo, None)
                if nxt is not None:
                    running.add(asyncio.ensure_future(nxt()))
                yield task.result()
    finally:
        for task in running:
            task.cancel()
