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

    async def settle(self, lock, stopping):  # Engine.settle: triggers kept after a tick
        return 0


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


class BusyEngine(SlowEngine):
    """A new head on every poll, and block ticks that take a while."""

    def __init__(self):
        super().__init__()
        self.head, self.finished, self.order = 0, 0, []

    async def block_number(self):
        self.head += 1
        return self.head

    async def on_block(self, block):
        self.order.append("tick started")
        await asyncio.sleep(0.3)
        self.finished += 1
        self.order.append("tick finished")
        return []


async def test_stop_lets_the_running_tick_and_the_sends_finish_then_logs_stopped():
    from structlog.testing import capture_logs

    engine = BusyEngine()
    runner = Runner(engine, 3600, 3600, 0.05)

    async def drain():
        engine.order.append("drained")
    runner.drain = drain
    with capture_logs() as logs:
        task = asyncio.create_task(runner.run())
        for _ in range(200):  # bounded: until a block tick is under way
            await asyncio.sleep(0.01)
            if engine.order and engine.order[-1] == "tick started":
                break
        runner.stop.set()
        await task  # returns normally: nothing was cancelled
    assert engine.order[-2:] == ["tick finished", "drained"]
    assert engine.order.count("tick started") == engine.finished  # every tick ran to its end
    events = [e["event"] for e in logs]
    assert events[-1] == "keeper.stopped"
    started = len(engine.order)
    await asyncio.sleep(0.2)
    assert len(engine.order) == started  # no new work after the stop


async def test_a_node_down_is_logged_at_a_decaying_rate_and_its_recovery_once():
    from structlog.testing import capture_logs

    from keeper.errors import SourceError

    class DownEngine(SlowEngine):
        down = True

        async def block_number(self):
            if self.down:
                raise SourceError("eth_blockNumber: node unreachable or failed (endpoint 0:h: HTTP 503)")
            return 9

    engine = DownEngine()
    runner = Runner(engine, 1, 1, 1)
    with capture_logs() as logs:
        for _ in range(20):
            await runner.block()
        engine.down = False
        await runner.block()
    failed = [e for e in logs if e["event"] == "block.poll_failed"]
    assert [e["in_a_row"] for e in failed] == [1, 2, 4, 8, 16]
    assert "HTTP 503" in failed[0]["error"]
    assert [e["failed_in_a_row"] for e in logs if e["event"] == "tick.recovered"] == [20]


async def test_pushed_heads_wait_for_the_lock_and_catch_up_to_the_newest():
    """A head pushed while a tick runs is not skipped: the worker waits, then applies the
    newest head once (the engine catches up every block since the last one it did)."""

    class Recording(SlowEngine):
        def __init__(self):
            super().__init__()
            self.blocks = []

        async def on_block(self, block):
            self.blocks.append(block)
            await asyncio.sleep(0.05)
            return []

    engine = Recording()
    runner = Runner(engine, 1, 1, 1)
    runner.head = 10
    worker = asyncio.create_task(runner._block_worker())
    runner.on_head(11)
    await asyncio.sleep(0.01)  # the tick of 11 is under way
    runner.on_head(12)
    runner.on_head(13)
    runner.on_head(12)  # an older head pushed late: nothing new
    for _ in range(100):  # bounded wait until both ticks ran
        await asyncio.sleep(0.01)
        if runner.head == 13:
            break
    runner.stopping = True
    runner._wake.set()
    await worker
    assert engine.blocks == [11, 13] and runner.skipped == 0


class ScanningEngine(SlowEngine):
    """Markets in memory (so later scans run beside the ticks) and a long safety-net scan."""

    def __init__(self):
        super().__init__()
        self.watches = [type("W", (), {"market": object()})()]
        self.head, self.ticks, self.merges = 7, [], 0

    async def block_number(self):
        return self.head

    async def scan_beside(self, lock, stopping):
        for _ in range(20):  # 20 parts: read without the lock, merge under it
            await asyncio.sleep(0.01)
            async with lock:
                self.merges += 1
        return 20

    async def on_block(self, block):
        self.ticks.append((block, self.merges))
        return []


async def test_the_safety_net_scan_runs_beside_block_ticks():
    engine = ScanningEngine()
    runner = Runner(engine, 1, 1, 1)
    scan = asyncio.create_task(runner.scan())
    await asyncio.sleep(0.05)
    for head in (8, 9):  # blocks arrive while the scan reads
        engine.head = head
        await runner.block()
        await asyncio.sleep(0.03)
    await scan
    assert [b for b, _ in engine.ticks] == [8, 9] and runner.skipped == 0
    assert all(0 < merged < 20 for _, merged in engine.ticks)  # each ran mid-scan
    second = asyncio.create_task(runner.scan())
    await runner.scan()  # a scan already running: this one is skipped
    await second
    assert runner.skipped == 1


async def test_each_block_tick_is_followed_by_its_settle_outside_the_lock_and_a_failed_one_is_logged():
    from structlog.testing import capture_logs

    class Settling(BusyEngine):
        def __init__(self):
            super().__init__()
            self.settles = []

        async def on_block(self, block):
            self.order.append("tick")
            return []

        async def settle(self, lock, stopping):  # Engine.settle takes the lock per slice itself
            self.settles.append(lock.locked())
            self.order.append("settle")
            if len(self.settles) == 2:
                raise RuntimeError("boom")
            return 3

    engine = Settling()
    runner = Runner(engine, 1, 1, 1)
    assert engine.settle_beside is True  # keeper run: triggers are kept after the tick
    with capture_logs() as logs:
        for _ in range(3):
            await runner.block()
            await runner._settling
    assert engine.order == ["tick", "settle"] * 3
    assert engine.settles == [False, False, False]
    failed = [e for e in logs if e["event"] == "triggers.settle_failed"]
    assert len(failed) == 1 and "boom" in failed[0]["error"] and failed[0]["log_level"] == "error"
    assert runner.head == 3  # the failed settle stopped no tick
