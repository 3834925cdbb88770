"""Requests made together go out together: one JSON-RPC batch for the reads a block starts.

keeper's Rpc sends each request in its own HTTP exchange (about 2 ms of keeper's own time
each on the 2-core development machine, where the node answers in less). Reads started at
once and awaited together (``asyncio.gather``: the market, its logs, the decision's wallet
balances at a new block) do not overlap on the node either: anvil answers them one after
another. Inside ``together()``, every request a task sends (a task created inside it
inherits it: ``contextvars``) is queued instead, and the queue goes out as ONE batch at the
end of the event loop's turn (``call_soon``); each request then gets its own answer (an
``error`` answer stays that request's). Order and semantics are those of the separate
requests: the batch fails over like any request, and a batch that fails fails each of them.

Broadcasts are never queued (keeper.chain.rpc sends them to every endpoint).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

Ask = Callable[[list[tuple[str, list[Any]]]], Awaitable[list[dict[str, Any]]]]


class Batcher:
    """The queue of one ``together()``: flushed once per event-loop turn."""

    def __init__(self) -> None:
        self.queue: list[tuple[Ask, str, list[Any], asyncio.Future]] = []
        self.batches = 0  # how many batches went out (tests)

    def ask(self, send: Ask, method: str, params: list[Any]) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if not self.queue:
            loop.call_soon(self._flush)
        self.queue.append((send, method, params, fut))
        return fut

    def _flush(self) -> None:
        queued, self.queue = self.queue, []
        by_sender: dict[int, list] = {}
        for item in queued:  # per Rpc (a bound method is a new object at each access)
            by_sender.setdefault(id(getattr(item[0], "__self__", item[0])), []).append(item)
        for items in by_sender.values():
            self.batches += 1
            task = asyncio.ensure_future(items[0][0]([(m, p) for _, m, p, _ in items]))
            task.add_done_callback(lambda t, items=items: _settle(t, items))


def _settle(task: asyncio.Future, items: list) -> None:
    for k, (_, _, _, fut) in enumerate(items):
        if fut.done():
            continue
        if task.cancelled():
            fut.cancel()
        elif task.exception() is not None:
            fut.set_exception(task.exception())
        else:
            fut.set_result(task.result()[k])


_ACTIVE: ContextVar[Batcher | None] = ContextVar("keeper_rpc_batcher", default=None)


def active() -> Batcher | None:
    return _ACTIVE.get()


@contextmanager
def together() -> Iterator[Batcher]:
    """Requests sent by tasks created inside (and by this task while inside) share batches."""
    b = Batcher()
    token = _ACTIVE.set(b)
    try:
        yield b
    finally:
        _ACTIVE.reset(token)
