"""Ticks never overlap: a tick that finds the previous one running is skipped, not queued."""

import asyncio

from keeper.runner import Runner


class SlowEngine:
    def __init__(self):
        self.running = 0
        self.max_running = 0
        self.scans = 0
        self.rpc = self
        self.watches = []

    async def block_number(self):
        return 7

    async def index(self, block):
        return 0

    async def full_scan(self, block):
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        await asyncio.sleep(0.05)
        self.running -= 1
        self.scans += 1
        return []

    async def on_block(self, block):
        return await self.full_scan(block)


async def test_a_slow_tick_makes_the_next_ones_skip():
    engine = SlowEngine()
    runner = Runner(engine, 1, 1, 1)
    await asyncio.gather(runner.scan(), runner.scan(), runner.scan())
    assert engine.max_running == 1
    assert engine.scans == 1
    assert runner.skipped == 2


async def test_block_tick_runs_once_per_new_head():
    engine = SlowEngine()
    runner = Runner(engine, 1, 1, 1)
    await runner.block()
    await runner.block()  # same head: nothing to do
    assert engine.scans == 1 and runner.head == 7
