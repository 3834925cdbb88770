"""One tick: pin a block -> read -> health -> report. Everything a tick needs is in memory.

``Watch`` holds one market's state (accounts, raw balances, positions; which accounts
hold which reserve is found when asked). A full scan re-reads every account; a block tick re-reads only
the accounts named by that block's events and recomputes only the positions that
hold a reserve whose price, index or configuration moved; a block that moved only one
oracle price (and interest) recomputes only the positions whose status band it leaves
(``Ahead.price_moved``, keeper.bands).

A block tick reads the market and its logs in one JSON-RPC batch (with the decision's
reads: keeper.chain.coalesce), recomputes the statuses it must, and hands them to the
responder's decisions first; the rest (the price-drop search of changed positions, their
log lines, the store, alerts) runs once the burst they started is broadcast (at most 1 s
later), yielding between slices (bench/latency.py). Under ``keeper run`` (``settle_beside``)
the triggers and bands of the positions a tick recomputed are kept after it (``settle``, a
slice at a time under the tick lock, like the scan's merges); until then those positions are
recomputed by every block (``Ahead.stale``), so a trigger not yet kept never misses one.

The safety-net scan (``scan_beside``) runs beside the block ticks: it reads every account
at the block the watch was at when it started (S), without the tick lock, and merges
each part as it arrives under the lock, evaluated against the watch's current market.
An account a block tick re-read after S (``Watch.fresh``) keeps its newer state; the
others have not changed since S (a raw account moves only by the events that name it),
so their state at S is their state now. Its reads give way to block ticks (``gate``,
keeper.chain.yielding).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from keeper.chain.coalesce import together
from keeper.chain.logs import LogScanner
from keeper.chain.yielding import Gate, background
from keeper.chain.multicall import Multicall
from keeper.chain.rpc import Rpc
from keeper.config import Config
from keeper.errors import ConfigError
from keeper.health.status import Thresholds
from keeper.model import Address, Position, Status
from keeper.protocols import registry
from keeper.protocols.base import ChainReaders, MarketAdapter
from keeper.store import Store
from keeper.triggers import Ahead

log = structlog.get_logger("keeper.engine")
MERGE_SLICE = 250  # accounts a scan_beside merges per hold of the tick lock (~10-25 ms)
SETTLE_SLICE = 250  # positions whose triggers ``settle`` keeps per hold of the tick lock (~10-40 ms)
RECORD_SLICE = 8  # positions a block tick records between two yields (after its decisions)


@dataclass
class _Step:
    """One watch's part of a block tick (Engine._on_block)."""

    w: "Watch"
    market: Any
    dirty: list[Address]
    fresh: list[Any]
    ev: Any = None
    pairs: list[tuple[Any, Position]] = field(default_factory=list)
    olds: dict[Address, Position | None] = field(default_factory=dict)


@dataclass
class Watch:
    """In-memory state of one market."""

    key: str
    adapter: MarketAdapter
    start_block: int
    tracked: set[Address] = field(default_factory=set)
    accounts: dict[Address, Any] = field(default_factory=dict)  # raw account state
    positions: dict[Address, Position] = field(default_factory=dict)
    market: Any = None  # the adapter's market state
    last_block: int | None = None  # last block whose events were applied
    scan_block: int | None = None  # S of a safety-net scan under way (scan_beside)
    fresh: dict[Address, int] = field(default_factory=dict)  # while scanning: account -> block a
    # tick re-read it at (newer than S: the scan's older read of it is dropped)
    ahead: Ahead | None = None  # triggers computed ahead (keeper.triggers)

    def set_account(self, acct: Any) -> Any:
        """Keep ``acct``; an equal one already kept stays (a full scan re-reads every account
        and most have not changed: new copies would only fragment the heap). Returns the
        one kept."""
        old = self.accounts.get(acct.account)
        if old is not None and old == acct:
            return old
        self.accounts[acct.account] = acct
        return acct

    def holding(self, keys: Iterable[Hashable]) -> set[Address]:
        """Accounts whose raw state holds any of ``keys`` (``adapter.keys_of``, e.g. reserve
        ids), found when asked: a set per key cost ~150 B a position, and only a move that
        is not one price (and interest) asks, to recompute them all anyway."""
        keys = set(keys)
        if not keys:
            return set()
        keys_of = self.adapter.keys_of
        return {a for a, acct in self.accounts.items() if not keys.isdisjoint(keys_of(acct))}

    @property
    def holders(self) -> _Holders:
        """key -> holders, as ``holding`` finds them (``holders.get(k, default)``)."""
        return _Holders(self)


class _Holders:
    __slots__ = ("w",)

    def __init__(self, w: Watch) -> None:
        self.w = w

    def get(self, key: Hashable, default: set[Address] | None = None) -> set[Address]:
        return self.w.holding((key,)) or (set() if default is None else default)


class Engine:
    def __init__(self, cfg: Config, rpc: Rpc, store: Store, drops: str = "flagged", ahead: bool = True):
        self.cfg = cfg
        self.drops = drops  # "all" | "flagged": which positions get the price-drop search
        self.rpc = rpc
        self.store = store
        self.mc = Multicall(rpc, cfg.chain.multicall3, cfg.chain.max_calls_per_multicall)
        self.logs = LogScanner(rpc, cfg.chain.logs_max_range)
        m = cfg.monitor
        self.thresholds = Thresholds(m.liquidation_hf, m.at_risk_hf, m.watch_hf)
        self.responder = None  # keeper.respond.Responder: decisions, actions, alerts
        self.watches: list[Watch] = []
        self._indexing = asyncio.Lock()  # discovery has its own lock: it never holds the tick's
        self.gate = Gate()  # closed while a block tick runs: scan_beside's reads give way
        self.timing: dict[str, Any] = {}  # the last block tick's phases (bench/scale.py, bench/latency.py)
        self.settle_beside = False  # True (keeper run): a block tick's triggers are kept after it (``settle``)
        chain = ChainReaders(rpc, self.mc, self.logs)
        for mk in cfg.markets:  # a Morpho Blue entry gives one watch per market id
            try:
                built = registry.build(mk, chain)
            except KeyError:
                raise ConfigError(f"protocol {mk.protocol!r} is not supported", key=f"markets.{mk.name}") from None
            for key, adapter in built:
                w = Watch(key, adapter, mk.start_block)
                if ahead:  # False: every move recomputes its holders (bench/idle.py's "before")
                    w.ahead = Ahead(adapter, self.thresholds, (p.account for p in cfg.protect))
                w.tracked.update(store.accounts(key))
                self.watches.append(w)

    # -- discovery ------------------------------------------------------------------
    async def index(self, to_block: int) -> int:
        """Discover borrowers from each market's checkpoint up to ``to_block``."""
        async with self._indexing:
            return await self._index(to_block)

    async def _index(self, to_block: int) -> int:
        found = 0
        for w in self.watches:
            cp = self.store.get_checkpoint(w.key)
            start = w.start_block if cp is None else cp + 1
            if start > to_block:
                continue
            async for last, accounts in w.adapter.discover(start, to_block):
                self.store.record_discovery(w.key, accounts, last)
                new = accounts - w.tracked
                w.tracked |= accounts
                found += len(new)
            log.info("index.updated", market=w.key, to_block=to_block, accounts=len(w.tracked))
        return found

    # -- full scan ------------------------------------------------------------------
    async def load(self, w: Watch, block: int) -> Any:
        m = self.cfg.monitor
        return await w.adapter.load_market(block, m.heartbeat_for)

    async def full_scan(self, block: int, shocks: dict[str, int] | None = None) -> list[Position]:
        """Re-read every tracked account at ``block`` and recompute every position."""
        out: list[Position] = []
        priced: set[str] = set()
        for w in self.watches:
            market = await self.load(w, block)
            priced |= {s.upper() for s in w.adapter.symbols(market)}
            seen = market
            if shocks:  # what-if: no transaction, only the pure math sees other prices
                seen = w.adapter.apply_shocks(market, shocks)
            else:
                w.market, w.last_block = market, block
            # parts arrive as the node answers: the math of one overlaps the read of the next;
            # a few reads in flight at once (chain.yielding), so few answers wait in memory
            mine: list[Position] = []
            with background(Gate()):
                async for part in w.adapter.iter_accounts(sorted(w.tracked), market):
                    if not shocks:
                        part = [w.set_account(a) for a in part]
                    mine.extend(self._evaluate(w, seen, part, record=not shocks))
            out.extend(mine)
            if w.ahead is not None and not shocks:
                w.ahead.warm()
            if self.responder is not None and not shocks:
                await self.responder.after_tick(w, market, mine)
        unknown = sorted(s for s in (shocks or {}) if s.upper() not in priced)
        if unknown:
            raise ConfigError(f"--shock {', '.join(unknown)}: no configured market prices it "
                              f"(known: {', '.join(sorted(priced))})")
        return out

    async def scan_beside(self, lock: asyncio.Lock, stopping: Callable[[], bool] = lambda: False) -> int:
        """The safety-net scan, beside the block ticks: read every tracked account of each
        watch at the block it is at now (S) without ``lock``; merge each part under ``lock``.
        A watch with nothing in memory yet is skipped (``full_scan`` starts it). Returns the
        number of accounts merged."""
        merged = 0
        for w in self.watches:
            async with lock:
                if w.market is None or w.last_block is None or stopping():
                    continue
                market, block = w.market, w.last_block  # the market at S, already read
                w.scan_block = block
            try:
                took: list[Address] = []
                with background(self.gate):  # its reads wait for a tick under way (chain.yielding)
                    async for part in w.adapter.iter_accounts(sorted(w.tracked), market):
                        for i in range(0, len(part), MERGE_SLICE):  # a block tick never waits long
                            await self.gate.wait()
                            async with lock:
                                took.extend(self._merge(w, block, part[i:i + MERGE_SLICE]))
                            await asyncio.sleep(0)  # a tick waiting for the lock goes first
                        if w.ahead is not None:  # the part's book edits applied now (a few ms),
                            await self.gate.wait()  # not piled up for a tick to apply (seconds)
                            async with lock:
                                w.ahead.warm()
                        if stopping():
                            return merged + len(took)
                async with lock:  # the responder sees the merged positions as they are now
                    if w.ahead is not None:
                        w.ahead.warm()  # here, not in the next tick
                    if self.responder is not None:
                        mine = [w.positions[a] for a in took if a in w.positions]
                        await self.responder.after_tick(w, w.market, mine)
                merged += len(took)
            finally:
                w.scan_block = None
                w.fresh.clear()
        return merged

    def _merge(self, w: Watch, block: int, part: list[Any]) -> list[Address]:
        """Under the tick lock: take the accounts of ``part`` (read at ``block``) that no tick
        re-read after it, and evaluate them against the watch's current market. No await:
        a part is merged whole between two block ticks."""
        take = [w.set_account(a) for a in part if w.fresh.get(a.account, -1) <= block]
        self._evaluate(w, w.market, take)
        return [a.account for a in take]

    async def settle(self, lock: asyncio.Lock, stopping: Callable[[], bool] = lambda: False) -> int:
        """Beside the block ticks (``settle_beside``): the triggers of the positions they
        recomputed, kept ``SETTLE_SLICE`` at a time under ``lock`` (a tick waiting for it goes
        between two slices), then the books edited. Returns how many were kept."""
        kept = 0
        while not stopping() and (todo := [w.ahead for w in self.watches if w.ahead is not None and w.ahead.pending]):
            for ahead in todo:
                async with lock:
                    kept += ahead.settle(SETTLE_SLICE)
                    if not ahead.pending:
                        ahead.warm()
                await asyncio.sleep(0)
        return kept

    # -- block tick -----------------------------------------------------------------
    async def on_block(self, block: int) -> list[Position]:
        """Apply blocks (last_block, block]: events -> dirty accounts; prices -> holders.
        A scan beside it waits meanwhile (``gate``)."""
        with self.gate.busy():
            return await self._on_block(block)

    async def _on_block(self, block: int) -> list[Position]:
        """Every watch's reads at once, then every watch's statuses and decisions, then the
        rest (triggers kept, drops, logs, alerts): a market's liquidations never wait for
        another market's bookkeeping."""
        changed: list[Position] = []
        for w in self.watches:
            if w.market is None or w.last_block is None:  # nothing in memory yet: start from scratch
                await self.index(block)
                changed.extend(await self.full_scan(block))
                return changed
        todo = [w for w in self.watches if block > w.last_block]
        if not todo:
            return changed
        t0 = time.perf_counter()
        # every watch's market and logs in one JSON-RPC batch, with the decision's reads
        # (keeper.chain.coalesce); their accounts' reads share the next one
        with together():
            if self.responder is not None:
                self.responder.prefetch(block, self.watches)
            reads = asyncio.gather(*(self._read(w, block) for w in todo))
        steps = await reads
        t1 = time.perf_counter()
        for st in steps:
            self._advance(st, block)
        t2 = time.perf_counter()
        self.timing = {"block": block, "read_ms": _ms(t1 - t0), "evaluated_ms": _ms(t2 - t0),
                       "evaluated": sum(len(st.pairs) for st in steps)}
        if self.responder is None:
            for st in steps:
                changed.extend(self._record(st.w, st.market, st.ev, st.pairs, defer=True))
        else:  # decisions first (their sends leave while the rest runs), then logs and alerts
            for st in steps:
                st.olds = {p.account: st.w.positions.get(p.account) for _, p in st.pairs}
                st.w.positions.update((p.account, p) for _, p in st.pairs)
            try:
                for st in steps:
                    await self.responder.act(st.w, st.market, {p.account for _, p in st.pairs})
                    await self.responder.until_sent()
            finally:  # a failed decision read still leaves every position recorded
                for st in steps:
                    mine = await self._record_yielding(st.w, st.market, st.ev, st.pairs, st.olds)
                    self.responder.report(st.w, mine)
                    changed.extend(mine)
        self.timing["total_ms"] = _ms(time.perf_counter() - t0)
        if not self.settle_beside:  # the triggers kept now, in this tick (else ``settle``, after it)
            for st in steps:
                if st.w.ahead is not None:
                    st.w.ahead.settle()
                    st.w.ahead.warm()
            self.timing["settled_ms"] = _ms(time.perf_counter() - t0)
        # bench/latency.py: the block path's phases, in ms since the tick began
        log.debug("block.timing", markets=len(steps), dirty=sum(len(st.dirty) for st in steps), **self.timing)
        return changed

    async def _read(self, w: Watch, block: int) -> _Step:
        """A watch's reads for blocks (last_block, block]: its market, its logs (from the
        sources the last market named; a source the new market adds is read after), the
        accounts those logs name."""
        sources, topics = w.adapter.event_sources(w.market), [w.adapter.event_topics()]
        market, logs = await asyncio.gather(self.load(w, block),
                                            self.logs.fetch(sources, topics, w.last_block + 1, block))
        added = [s for s in w.adapter.event_sources(market) if s not in set(sources)]
        if added:
            logs = [*logs, *await self.logs.fetch(added, topics, w.last_block + 1, block)]
        touched, borrowers = w.adapter.touched(logs)
        new = borrowers - w.tracked
        if new:
            self.store.add_accounts(w.key, new, block)
            w.tracked |= new
        dirty = sorted((touched & w.tracked) | new)
        fresh = await w.adapter.read_accounts(dirty, market) if dirty else []
        return _Step(w, market, dirty, fresh)

    def _advance(self, st: _Step, block: int) -> None:
        """The watch moves to ``block``: re-read accounts kept, and the statuses of what the
        block may have changed (``st.pairs``)."""
        w, market = st.w, st.market
        for a in st.fresh:
            w.set_account(a)
            if w.scan_block is not None:
                w.fresh[a.account] = block
        affected = set(st.dirty)
        if w.ahead is not None:  # triggers not kept yet since an earlier tick (``settle``)
            affected.update(w.ahead.pending)
        level = w.ahead.accrued(w.market, market) if w.ahead is not None else None
        if level is not None:  # interest alone: only the positions whose crossing has come
            affected |= w.ahead.due(level)
        elif w.ahead is not None and (hit := w.ahead.price_moved(w.market, market)) is not None:
            affected |= hit  # one price (and interest): only positions whose band it leaves
        else:
            affected |= w.holding(w.adapter.moved(w.market, market))
        if level is None and w.ahead is not None:  # crossings no moved reserve reaches (Aave)
            affected |= w.ahead.due_at(market)
        w.market, w.last_block = market, block
        st.ev = w.adapter.evaluator(market)
        st.pairs = self._statuses(st.ev, [w.accounts[a] for a in affected if a in w.accounts])

    # -- health ---------------------------------------------------------------------
    def _evaluate(self, w: Watch, market: Any, accounts: Iterable[Any],
                  record: bool = True) -> list[Position]:
        ev = w.adapter.evaluator(market)  # per-market values computed once
        return self._record(w, market, ev, self._statuses(ev, accounts), record=record)

    def _statuses(self, ev: Any, accounts: Iterable[Any]) -> list[tuple[Any, Position]]:
        """(account, position) of each: the health and status alone (what a decision needs)."""
        all_drops, th = self.drops == "all", self.thresholds
        return [(acct, ev.position(acct, th, all_drops)) for acct in accounts]

    async def _record_yielding(self, w: Watch, market: Any, ev: Any, pairs: list[tuple[Any, Position]],
                               olds: dict[Address, Position | None]) -> list[Position]:
        """``_record`` a slice at a time, letting the event loop run between slices (sends
        and receipts go on while a crash's log lines and price-drop searches are made)."""
        out: list[Position] = []
        transitions: list[tuple] = []
        for i in range(0, len(pairs), RECORD_SLICE):
            out += self._record(w, market, ev, pairs[i:i + RECORD_SLICE], olds, transitions=transitions, defer=True)
            await asyncio.sleep(0)
        self.store.set_statuses(w.key, transitions, checked=True)
        return out

    def _record(self, w: Watch, market: Any, ev: Any, pairs: list[tuple[Any, Position]],
                olds: dict[Address, Position | None] | None = None, record: bool = True,
                transitions: list[tuple] | None = None, defer: bool = False) -> list[Position]:
        """The rest of an evaluation: triggers kept (``defer``: later, ``Ahead.settle``), the
        price-drop search where a status changes, transitions logged and stored (or added to
        ``transitions`` for the caller to store). ``olds``: the positions before this tick,
        where ``w.positions`` already holds the new ones (the block tick decides first)."""
        out, stored = [], transitions is None
        transitions = [] if transitions is None else transitions
        all_drops = self.drops == "all"
        ahead = w.ahead if record else None
        keep = None if ahead is None else ahead.defer if defer else ahead.keep
        for acct, pos in pairs:
            old = w.positions.get(pos.account) if olds is None else olds.get(pos.account)
            if keep is not None:
                keep(market, acct, pos)
            if not all_drops and pos.status != Status.SAFE and (old is None or old.status != pos.status):
                # the drop is for people (logs, alerts): search it where a status changes
                pos = replace(pos, drop_to_liquidation_bps=ev.drop(acct))
            if record and self._transition(w, pos, old):
                transitions.append((pos.account, pos.status, pos.health_factor_wad, pos.block))
            out.append(pos)
        if stored:
            self.store.set_statuses(w.key, transitions, checked=True)
        return out

    @staticmethod
    def _transition(w: Watch, pos: Position, old: Position | None) -> bool:
        """Keep ``pos``; log it when its status changed from ``old``'s. True when it did."""
        w.positions[pos.account] = pos
        was = old.status if old else Status.SAFE
        changed = pos.status != was or (old is None and pos.status != Status.SAFE)
        if changed:
            event = "position.flagged" if pos.status.rank > was.rank else "position.improved"
            if pos.status == Status.SAFE:
                event = "position.recovered"
            log.warning(event, protocol=pos.protocol, market=w.key, account=pos.account,
                        block=pos.block, status=pos.status.value, previous=was.value,
                        health_factor=pos.health_factor_wad, collateral_base=pos.collateral_base,
                        debt_base=pos.debt_base, reliable=pos.reliable,
                        drop_to_liquidation_bps=pos.drop_to_liquidation_bps)
        return changed

    def positions(self) -> list[Position]:
        return [p for w in self.watches for p in w.positions.values()]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
