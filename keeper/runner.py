"""`keeper run`: APScheduler 3 jobs around the engine, with no overlapping ticks.

Jobs: ``index`` (borrower discovery), ``scan`` (full re-read every N seconds) and
``block`` (poll the head; on a new block apply its events and price moves). All
share one lock: a tick that finds the previous one still running is skipped and
logged (``tick.skipped``), never queued. SIGINT/SIGTERM stop the scheduler, wait
for the running tick and close the node connection.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from keeper.engine import Engine
from keeper.errors import SourceError

log = structlog.get_logger("keeper.run")


class Runner:
    def __init__(self, engine: Engine, scan_interval_s: float, index_interval_s: float,
                 block_poll_interval_s: float, notifications=None):
        self.engine = engine
        self.notifications = notifications
        self.lock = asyncio.Lock()
        self.stop = asyncio.Event()
        self.head = -1
        self.intervals = (scan_interval_s, index_interval_s, block_poll_interval_s)
        self.skipped = 0

    async def _guarded(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        if self.lock.locked():
            self.skipped += 1
            log.info("tick.skipped", job=name, reason="previous tick still running")
            return
        async with self.lock:
            t0 = time.perf_counter()
            try:
                await fn()
            except SourceError as e:  # a read failed: skip this tick, the next one retries
                log.warning("tick.failed", job=name, error=str(e))
                return
            log.debug("tick.done", job=name, ms=round((time.perf_counter() - t0) * 1000, 1))

    async def index(self) -> None:
        async def go() -> None:
            await self.engine.index(await self.engine.rpc.block_number())
        await self._guarded("index", go)

    async def scan(self) -> None:
        async def go() -> None:
            block = await self.engine.rpc.block_number()
            await self.engine.index(block)
            positions = await self.engine.full_scan(block)
            self.head = max(self.head, block)
            flagged = sum(1 for p in positions if p.status.rank >= 2)
            log.info("scan.done", block=block, positions=len(positions), flagged=flagged)
        await self._guarded("scan", go)

    async def block(self) -> None:
        if self.lock.locked():  # polling is frequent; a busy engine simply waits for the next poll
            return
        try:
            head = await self.engine.rpc.block_number()
        except SourceError as e:
            log.warning("block.poll_failed", error=str(e))
            return
        if head <= self.head:
            return

        async def go() -> None:
            await self.engine.on_block(head)
            self.head = head
        await self._guarded("block", go)

    async def deliver(self) -> None:
        """Send due alerts: its own job, outside the tick lock (a slow channel never delays a tick)."""
        if self.notifications is not None:
            await self.notifications.deliver_due(time.time())

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        scan_s, index_s, poll_s = self.intervals
        sched = AsyncIOScheduler(event_loop=loop)
        opts = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        sched.add_job(self.index, "interval", seconds=index_s, id="index", **opts)
        sched.add_job(self.scan, "interval", seconds=scan_s, id="scan", **opts)
        sched.add_job(self.block, "interval", seconds=poll_s, id="block", **opts)
        if self.notifications is not None:
            sched.add_job(self.deliver, "interval", seconds=1, id="notify", **opts)
        log.info("keeper.started", markets=[w.key for w in self.engine.watches])
        await self.scan()  # the first full pass right away
        sched.start()
        try:
            await self.stop.wait()
        finally:
            log.info("keeper.stopping")
            sched.shutdown(wait=False)
            async with self.lock:  # let a running tick finish
                pass
            if self.notifications is not None:
                await self.deliver()  # one last delivery of what is due
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            log.info("keeper.stopped", skipped_ticks=self.skipped)
