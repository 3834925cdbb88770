"""Background reads that give way to the block path.

The safety-net scan (``Engine.scan_beside``) reads every account while block ticks keep
coming on the same Python thread and the same node. To keep it out of a tick's way, its
reads run with a ``Gate`` as the context's background gate (``background``; asyncio tasks
started inside inherit it): every JSON-RPC request made there (``Rpc._ask``)

* waits while a tick is under way (``Gate.busy``, entered by the block path) before it is
  sent, and again before its answer goes back to its caller, so the scan's decoding and
  math run between ticks, not inside one;
* takes one of a few slots (``SLOTS``), so the node never has more than that many scan
  requests queued in front of a tick's reads.

Requests outside a background context (the ticks, the sends) never wait. A tick that starts
while a scan's part is being decoded waits for that part only (the parts are small).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

SLOTS = 4  # background requests in flight at once

_current: ContextVar[Gate | None] = ContextVar("keeper_background_gate", default=None)


class Gate:
    """Open while no tick runs; ``busy`` closes it for the length of a tick (nestable)."""

    def __init__(self, slots: int = SLOTS) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._depth = 0
        self.slots = asyncio.Semaphore(slots)
        self.waits = 0  # times a background request or step waited for a tick (tests, bench)

    @property
    def open(self) -> bool:
        return self._open.is_set()

    async def wait(self) -> None:
        """Return at once when no tick runs, else when it has finished."""
        if not self._open.is_set():
            self.waits += 1
            await self._open.wait()

    @contextmanager
    def busy(self) -> Iterator[None]:
        self._depth += 1
        self._open.clear()
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._open.set()


def current() -> Gate | None:
    """The gate of the background work this code runs in, or None (the block path)."""
    return _current.get()


@contextmanager
def background(gate: Gate | None) -> Iterator[None]:
    """Run the block inside (and the tasks it starts) as background work of ``gate``
    (None: as foreground work again)."""
    token = _current.set(gate)
    try:
        yield
    finally:
        _current.reset(token)


async def gated(ask: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``ask(*args)`` at once, or, inside ``background`` work, after any tick under way and a
    few at a time (``Gate.slots``); its answer is handed back once no tick runs (the caller
    decodes it between ticks)."""
    gate = current()
    if gate is None:
        return await ask(*args)
    async with gate.slots:
        await gate.wait()
        response = await ask(*args)
    await gate.wait()
    return response
