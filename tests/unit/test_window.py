"""keeper.chain.window.ahead: every read's result, at most ``window`` read ahead of the caller."""

from __future__ import annotations

import asyncio

import pytest

from keeper.chain.window import ahead


async def test_every_result_and_never_more_than_the_window_ahead_of_a_slow_caller():
    started, taken, most = 0, 0, 0

    def read(k: int):
        async def go() -> int:
            nonlocal started, most
            started += 1
            most = max(most, started - taken)
            await asyncio.sleep(0.001 * (k % 3))  # they finish out of order
            return k
        return go

    got = []
    async for k in ahead([read(k) for k in range(25)], window=3):
        taken += 1
        got.append(k)
        await asyncio.sleep(0.005)  # the caller's math is slower than the reads
    assert sorted(got) == list(range(25))
    assert most == 3  # all 25 at once before (the answers waited in memory)


async def test_an_error_reaches_the_caller_and_the_other_reads_are_cancelled():
    cancelled = []

    def read(k: int):
        async def go() -> int:
            if k == 1:
                raise ValueError("part 1 failed")
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(k)
                raise
            return k
        return go

    with pytest.raises(ValueError, match="part 1 failed"):
        async for _ in ahead([read(k) for k in range(6)], window=3):
            pass
    await asyncio.sleep(0)
    assert sorted(cancelled) == [0, 2]  # the two running beside it; 3-5 never started


async def test_a_window_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        async for _ in ahead([], window=0):
            pass
