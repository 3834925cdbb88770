"""`keeper run`: APScheduler 3 jobs around the engine, with no overlapping ticks.

Jobs: ``index`` (borrower discovery), ``scan`` (full re-read every N seconds) and
``block`` (poll the head; on a new block apply its events and price moves). Block ticks
hold one lock: a tick that finds the previous one still running is skipped and logged
(``tick.skipped``), never queued. Discovery runs outside it, and so does the safety-net
scan after the first one: it reads beside the block ticks and takes the lock only to merge
each part (keeper.engine.Engine.scan_beside), so a crash mid-scan is acted on at the next
block, not after the scan.

Pushed heads (``heads``, a keeper.chain.heads.HeadSubscription, when ``[chain] ws_url`` is
set): each announced block wakes a worker that waits for the lock (a pushed head is never
skipped) and applies the newest head; heads that came while a tick ran are caught up in one
tick from the last processed block. Polling stays on as the fallback (a dead socket costs
latency, not blocks); whichever sees a head first runs its tick, the other finds it done.

SIGINT/SIGTERM: stop taking new work (the scheduler stops, no new tick starts), wait for
the running tick, then for the sends already started (``drain``: each reaches the journal
and its outcome, or the drain times out and the journal settles it at the next start),
deliver what alerts are due, and only then log ``keeper.stopped``. A failed read is logged
at a decaying rate (1st, 2nd, 4th... in a row), so a node down for long costs few lines.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import time
from collections.abc import Awaitable, Callable

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from keeper import memory
from keeper.chain.endpoints import paced
from keeper.engine import Engine
from keeper.errors import SourceError

log = structlog.get_logger("keeper.run")
OPS_S = 2.0  # how often operator conditions (keeper.ops_alerts) are checked


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
        self.failures_in_row = 0
        self.stopping = False
        self._jobs: set[asyncio.Task] = set()  # scheduler jobs running now
        self.metrics = None  # keeper.metrics.Metrics: told of each tick
        self.ops: Callable[[], Awaitable[object]] | None = None  # operator alerts, every OPS_S
        self.drain: Callable[[], Awaitable[None]] | None = None  # in-flight sends, awaited at stop
        self.heads = None  # keeper.chain.heads.HeadSubscription: pushed heads (else polling alone)
        self.services: list = []  # more subscriptions run beside the heads (keeper.backrun's pending txs)
        self._pushed = -1
        self._wake = asyncio.Event()
        self._scanning = False  # a safety-net scan is running beside the block ticks
        self._settling: asyncio.Task | None = None  # triggers kept after a tick (Engine.settle)
        engine.settle_beside = True

    async def _guarded(self, name: str, fn: Callable[[], Awaitable[None]], wait: bool = False) -> None:
        if self.lock.locked() and not wait:
            self.skipped += 1
            log.info("tick.skipped", job=name, reason="previous tick still running")
            return
        async with self.lock:
            t0 = time.perf_counter()
            try:
                await fn()
            except SourceError as e:  # a read failed: skip this tick, the next one retries
                self._failed("tick.failed", name, e, time.perf_counter() - t0)
                return
            self._succeeded(name, time.perf_counter() - t0)
            log.debug("tick.done", job=name, ms=round((time.perf_counter() - t0) * 1000, 1))

    def _failed(self, event: str, job: str, e: SourceError, seconds: float) -> None:
        self.failures_in_row += 1
        if paced(self.failures_in_row):
            log.warning(event, job=job, error=str(e), in_a_row=self.failures_in_row)
        if self.metrics is not None:
            self.metrics.tick(job, seconds, False)

    def _succeeded(self, job: str, seconds: float) -> None:
        if self.failures_in_row:
            log.info("tick.recovered", job=job, failed_in_a_row=self.failures_in_row)
        self.failures_in_row = 0
        if self.metrics is not None:
            self.metrics.tick(job, seconds, True)

    async def index(self) -> None:
        """Discovery, outside the tick lock (the engine serializes it on its own lock)."""
        await self._beside("index", lambda: self._index())

    async def _index(self) -> None:
        await self.engine.index(await self.engine.rpc.block_number())

    async def scan(self) -> None:
        """The first scan (nothing in memory yet) holds the tick lock; later ones, the safety
        net, run beside the block ticks (Engine.scan_beside) and only merge under the lock."""
        watches = self.engine.watches
        if watches and all(w.market is not None for w in watches):
            if self._scanning:
                self.skipped += 1
                log.info("tick.skipped", job="scan", reason="previous scan still running")
                return
            self._scanning = True
            try:
                await self._beside("scan", self._scan_beside)
            finally:
                self._scanning = False
            return

        async def go() -> None:
            block = await self.engine.rpc.block_number()
            await self.engine.index(block)
            positions = await self.engine.full_scan(block)
            self.head = max(self.head, block)
            flagged = sum(1 for p in positions if p.status.rank >= 2)
            log.info("scan.done", block=block, positions=len(positions), flagged=flagged)
            memory.release()  # the scan's transient heap back to the OS
        await self._guarded("scan", go)

    async def _scan_beside(self) -> None:
        await self._index()
        merged = await self.engine.scan_beside(self.lock, lambda: self.stopping)
        log.info("scan.done", block=self.head, positions=merged, beside=True)
        memory.release()

    async def _beside(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        """A job that runs without the tick lock: timed and its read failures handled as a tick's."""
        t0 = time.perf_counter()
        try:
            await fn()
        except SourceError as e:
            self._failed("tick.failed", name, e, time.perf_counter() - t0)
            return
        self._succeeded(name, time.perf_counter() - t0)

    async def block(self) -> None:
        if self.lock.locked():  # polling is frequent; a busy engine simply waits for the next poll
            return
        try:
            head = await self.engine.rpc.block_number()
        except SourceError as e:
            self._failed("block.poll_failed", "poll", e, 0.0)
            return
        if head <= self.head:
            return
        log.debug("block.seen", head=head, source="poll")  # bench/race.py: block seen -> tx sent
        await self._tick(head)

    def on_head(self, head: int) -> None:
        """A head pushed by the node (HeadSubscription): wake the block worker."""
        if head > max(self._pushed, self.head):
            log.debug("block.seen", head=head, source="ws")
        self._pushed = max(self._pushed, head)
        self._wake.set()

    async def _block_worker(self) -> None:
        while not self.stopping:
            await self._wake.wait()
            self._wake.clear()
            if self.stopping:
                return
            await self._tick(self._pushed, wait=True)

    async def _tick(self, head: int, wait: bool = False) -> None:
        async def go() -> None:
            if head <= self.head:  # the other path (poll or push) got there first
                return
            await self.engine.on_block(head)  # applies (last processed block, head]
            self.head = head
        await self._guarded("block", go, wait=wait)
        if self._settling is None or self._settling.done():  # the tick's triggers, after it
            self._settling = asyncio.create_task(self._settle())

    async def _settle(self) -> None:
        """Not a tick: a failure here is logged; positions left unsettled are recomputed by
        every block tick until a settle succeeds (Ahead.stale), never missed."""
        t0 = time.perf_counter()
        try:
            kept = await self.engine.settle(self.lock, lambda: self.stopping)
        except Exception as e:  # a bug to see in the log, not a reason to stop watching
            log.error("triggers.settle_failed", error=repr(e))
            return
        if kept:
            log.debug("triggers.settled", positions=kept, ms=round((time.perf_counter() - t0) * 1000, 1))

    async def deliver(self) -> None:
        """Send due alerts: its own job, outside the tick lock (a slow channel never delays a tick)."""
        if self.notifications is not None:
            await self.notifications.deliver_due(time.time())

    def _job(self, fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """A scheduler job that starts nothing once stopping, and that the stop waits for
        (so the scheduler never has to cancel a running job)."""
        @functools.wraps(fn)  # the scheduler's log lines name the job (Runner.block)
        async def job() -> None:
            if self.stopping:
                return
            task = asyncio.current_task()
            if task is not None:
                self._jobs.add(task)
            try:
                await fn()
            finally:
                self._jobs.discard(task)  # type: ignore[arg-type]
        return job

    async def run(self) -> None:
        memory.tune()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        scan_s, index_s, poll_s = self.intervals
        sched = AsyncIOScheduler(event_loop=loop)
        opts = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        sched.add_job(self._job(self.index), "interval", seconds=index_s, id="index", **opts)
        sched.add_job(self._job(self.scan), "interval", seconds=scan_s, id="scan", **opts)
        sched.add_job(self._job(self.block), "interval", seconds=poll_s, id="block", **opts)
        if self.notifications is not None:
            sched.add_job(self._job(self.deliver), "interval", seconds=1, id="notify", **opts)
        if self.ops is not None:
            sched.add_job(self._job(self.ops), "interval", seconds=OPS_S, id="ops", **opts)
        log.info("keeper.started", markets=[w.key for w in self.engine.watches])
        await self.scan()  # the first full pass right away
        sched.start()
        pushed = []
        if self.heads is not None:
            pushed = [asyncio.create_task(self.heads.run(self.stop)), asyncio.create_task(self._block_worker())]
        pushed += [asyncio.create_task(s.run(self.stop)) for s in self.services]
        try:
            await self.stop.wait()
        finally:
            log.info("keeper.stopping")
            self.stopping = True  # no new work from here on
            if sched.running:
                sched.pause()
            self._wake.set()  # the block worker sees ``stopping`` and ends
            if pushed:
                await asyncio.wait(pushed, timeout=30)
            async with self.lock:  # let a running tick finish
                if self.drain is not None:
                    await self.drain()  # sends already started reach the journal and their outcome
            if self._jobs:  # a poll or a delivery under way: let it end rather than cancel it
                await asyncio.wait(set(self._jobs), timeout=30)
            if self._settling is not None:  # sees ``stopping``: ends after its slice
                await asyncio.wait({self._settling}, timeout=30)
            if self.notifications is not None:
                await self.deliver()  # one last delivery of what is due
            if sched.running:
                sched.shutdown(wait=False)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            log.info("keeper.stopped", skipped_ticks=self.skipped)
