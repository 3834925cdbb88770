"""keeper.chain.yielding: a scan's reads (background work) give way to a block tick: none is
sent while a tick runs, an answer that arrives during a tick goes back to its caller after it,
at most SLOTS are in flight, and the block path's own reads never wait."""

from __future__ import annotations

import asyncio

from keeper.chain import yielding
from keeper.chain.rpc import Rpc
from keeper.chain.yielding import Gate, background


class _Node:
    """Rpc._ask_now's stand-in: records what was sent, answers when told."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.inflight = self.peak = 0
        self.answer = asyncio.Event()

    async def ask(self, method, send):
        self.sent.append(method)
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        try:
            await self.answer.wait()
        finally:
            self.inflight -= 1
        return {"result": method}


def _rpc(node: _Node) -> Rpc:
    rpc = Rpc("http://127.0.0.1:9")
    rpc._ask_now = node.ask  # type: ignore[method-assign]
    return rpc


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_busy_nests_and_reopens():
    g = Gate()
    with g.busy():
        with g.busy():
            assert not g.open
        assert not g.open
    assert g.open


async def test_background_reads_wait_for_a_tick_and_foreground_reads_do_not():
    node, gate = _Node(), Gate()
    rpc = _rpc(node)
    with gate.busy():  # a tick under way
        with background(gate):
            scan = asyncio.ensure_future(rpc.raw("scan_read", []))  # the task inherits the gate
        tick = asyncio.ensure_future(rpc.raw("tick_read", []))
        await _settle()
        assert node.sent == ["tick_read"]  # the scan's read is held back
        node.answer.set()
        assert (await tick)["result"] == "tick_read"
        await _settle()
        assert not scan.done()
    await asyncio.wait_for(scan, 5)
    assert node.sent == ["tick_read", "scan_read"] and gate.waits >= 1
    assert yielding.current() is None


async def test_an_answer_arriving_during_a_tick_returns_after_it():
    node, gate = _Node(), Gate()
    rpc = _rpc(node)
    with background(gate):
        scan = asyncio.ensure_future(rpc.raw("scan_read", []))
    await _settle()
    assert node.sent == ["scan_read"]
    with gate.busy():  # the tick starts while the node works on the scan's read
        node.answer.set()
        await _settle()
        assert not scan.done()  # answered, but its decoding waits for the tick
    await asyncio.wait_for(scan, 5)


async def test_at_most_slots_background_reads_in_flight():
    node, gate = _Node(), Gate(slots=3)
    rpc = _rpc(node)
    with background(gate):
        reads = [asyncio.ensure_future(rpc.raw(f"r{i}", [])) for i in range(10)]
    await _settle()
    assert node.peak == 3 and len(node.sent) == 3
    node.answer.set()
    await asyncio.wait_for(asyncio.gather(*reads), 5)
    assert node.peak == 3 and len(node.sent) == 10
