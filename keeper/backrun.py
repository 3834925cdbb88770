"""The backrun of a price update: liquidations placed right behind it, in its own block.

keeper.chain.mempool hands every pending transaction sent to a watched feed to ``on_tx``;
keeper.oracle_updates decodes the new answer. Then, for each watched market that prices an
asset from that feed (``adapter.price_feeds``; a Chainlink proxy's ``aggregator()`` is
resolved once, since updates go to the aggregator):

1. the move: ``shock_bps(current answer, new answer)`` per symbol, every update still pending
   (not mined yet) taken together (two feeds moved in one block);
2. the market as it will be: ``adapter.apply_shocks`` on the engine's latest market, and the
   positions the move reaches (``adapter.moved`` -> holders) evaluated with it;
3. the liquidatable ones planned as the block tick plans them (keeper.respond, the market's
   own planner) and handed to keeper.executors.backrun, which simulates them behind the
   update and sends them with fees that order them right after it.

A bps move is floored: a position at the very edge may be planned and then dropped by the
simulation behind the update (the simulation is the truth). Nothing here blocks a tick: the
work runs in its own task, outside the tick lock, on the engine's last state.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from keeper.chain.abi import call_data, signed_word, address_word
from keeper.chain.mempool import PendingTx
from keeper.chain.multicall import Call
from keeper.decide import liquidations_due
from keeper.errors import ExecutionError, SourceError
from keeper.oracle_updates import FeedUpdate, decode_update, shock_bps

log = structlog.get_logger("keeper.backrun")


@dataclass(frozen=True, slots=True)
class Seen:
    update: FeedUpdate
    tx: PendingTx
    after_block: int  # the engine's last processed block when it was seen
    old_answer: int


class Backrunner:
    def __init__(self, engine, responder, sender):
        self.engine, self.responder, self.sender = engine, responder, sender
        self.pending: dict[str, Seen] = {}  # feed (lower) -> its latest pending update
        self._feeds: dict[str, list[tuple[object, str]]] = {}  # feed or aggregator (lower) -> [(watch, symbol)]
        self._feeds_at: tuple | None = None
        self._resolved: dict[str, str] = {}  # proxy (lower) -> aggregator (lower)
        self._resolving = False
        self.tasks: set[asyncio.Task] = set()
        self.planned = 0  # decisions handed to the sender

    # -- which feeds --------------------------------------------------------------------
    def feeds(self) -> dict[str, list[tuple[object, str]]]:
        at = tuple((id(w), id(w.market)) for w in self.engine.watches)
        if at != self._feeds_at:
            out: dict[str, list] = {}
            for w in self.engine.watches:
                if w.market is None:
                    continue
                for feed, symbol in w.adapter.price_feeds(w.market).items():
                    for key in {feed.lower(), self._resolved.get(feed.lower(), feed.lower())}:
                        out.setdefault(key, []).append((w, symbol))
            self._feeds, self._feeds_at = out, at
            if any(f not in self._resolved for f in out) and not self._resolving:
                self._resolving = True
                self._spawn(self.resolve())
        return self._feeds

    async def resolve(self) -> None:
        """Chainlink proxies forward to an aggregator, and updates go to the aggregator: ask
        each feed for ``aggregator()`` once (a feed without it is its own aggregator)."""
        try:
            todo = [f for f in self._feeds if f not in self._resolved]
            if not todo:
                return
            block = await self.engine.rpc.block_number()
            res = await self.engine.mc.run([Call(f, call_data("aggregator()")) for f in todo], block)
        except SourceError as e:
            log.warning("backrun.feeds_unresolved", error=str(e), reason="updates sent to the feeds themselves only")
            return
        finally:
            self._resolving = False
        for f, (ok, raw) in zip(todo, res):
            self._resolved[f] = address_word(raw).lower() if ok and len(raw) == 32 else f
        self._feeds_at = None

    def wanted(self, to: str) -> bool:
        return to.lower() in self.feeds()

    # -- a pending update -----------------------------------------------------------------
    def on_tx(self, tx: PendingTx) -> None:
        update = decode_update(tx.to, tx.data)
        if update is None:
            return
        log.debug("pending.seen", feed=update.feed, tx=tx.hash)  # bench/latency.py: pending seen -> sent
        self._spawn(self.handle(update, tx))

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def handle(self, update: FeedUpdate, tx: PendingTx) -> list:
        """The decisions handed to the sender (a failed read skips this update: the block
        tick still acts one block later)."""
        try:
            return await self._handle(update, tx)
        except (SourceError, ExecutionError) as e:
            log.warning("backrun.failed", feed=update.feed, tx=tx.hash, error=str(e),
                        consequence="left to the block tick")
            return []

    async def _handle(self, update: FeedUpdate, tx: PendingTx) -> list:
        users = self.feeds().get(update.feed.lower(), [])
        if not users:
            return []
        last = max((w.last_block or 0) for w, _ in users)
        await self._forget_mined(last)
        raw = await self.engine.rpc.call(update.feed, call_data("latestAnswer()"))
        old = signed_word(raw, 0)
        self.pending[update.feed.lower()] = Seen(update, tx, last, old)
        every = sorted({s.tx.hash: s.tx for s in self.pending.values()}.values(), key=lambda u: (u.sender, u.nonce))
        self._spawn(self.sender.recheck(every))  # what was sent behind fewer updates (backrun_watch)
        log.info("oracle.pending", feed=update.feed, tx=tx.hash, answer=update.answer, current=old,
                 max_fee_per_gas=tx.max_fee_per_gas)
        if old <= 0:
            return []
        out = []
        for w in {id(w): w for w, _ in users}.values():
            out += await self._plan(w)
        return out

    def moves(self, w) -> tuple[dict[str, int], list[PendingTx]]:
        """The pending moves of ``w``'s prices (symbol -> bps) and the updates behind them,
        in the order they will be mined (by sender and nonce)."""
        shocks: dict[str, int] = {}
        updates = []
        for feed, s in self.pending.items():
            for ww, symbol in self.feeds().get(feed, []):
                if ww is w:
                    shocks[symbol] = shock_bps(s.old_answer, s.update.answer)
                    updates.append(s.tx)
        updates.sort(key=lambda u: (u.sender, u.nonce))
        return shocks, list({u.hash: u for u in updates}.values())

    async def _forget_mined(self, last: int, give_up_blocks: int = 5) -> None:
        """Drop the updates mined since they were seen (the block tick has their price; a
        block number alone cannot tell: a tick may end between two updates of one block),
        and those still unmined ``give_up_blocks`` later (replaced or evicted)."""
        older = [(k, s) for k, s in self.pending.items() if s.after_block < last]
        if not older:
            return
        receipts = await self.engine.rpc.batch([("eth_getTransactionReceipt", [s.tx.hash]) for _, s in older])
        for (k, s), rc in zip(older, receipts):
            if (rc is not None or s.after_block < last - give_up_blocks) and self.pending.get(k) is s:
                del self.pending[k]

    async def _plan(self, w) -> list:
        shocks, updates = self.moves(w)
        market = w.market
        shocked = w.adapter.apply_shocks(market, shocks)
        reached = named_by_triggers(w, market, shocked)
        by = "triggers"
        if reached is None:  # every holder of what moved
            reached, by = set(), "holders"
            for k in w.adapter.moved(market, shocked):
                reached |= w.holders.get(k, set())
        ev = w.adapter.evaluator(shocked)
        th = self.engine.thresholds
        positions = [ev.position(w.accounts[a], th, False) for a in reached if a in w.accounts]
        # in flight, except in a backrun not sent yet: planned again behind every update now
        busy = self.sender.ex.in_flight - self.sender.replaceable()
        due = [p for p in liquidations_due(self.responder.policy, positions) if f"{w.key}:{p.account}" not in busy]
        log.info("backrun.planned", market=w.key, shocks=shocks, reached=len(reached), by=by, due=len(due),
                 behind=[u.hash for u in updates])
        if not due:
            return []
        decisions = await self.responder.decide_for(
            w, shocked, due, lambda ds, adapter, m: self.sender.submit(ds, adapter, m, updates,
                                                                      lambda: self.moves(w)[1]))
        self.planned += len(decisions)
        return decisions


def named_by_triggers(w, market, shocked) -> set[str] | None:
    """The accounts a move from ``market`` to ``shocked`` may liquidate, from the watch's
    trigger book (keeper.triggers: ``Ahead.candidates``) instead of every holder: when one
    price key moved, its candidates (every position that price liquidates, and a few one
    exact evaluation clears) and those already liquidatable. None when the book cannot
    tell: no book (Aave keeps none), a price the adapter cannot name, or several keys moved
    (a position liquidated only by their joint move is on neither key's list)."""
    ahead = w.ahead
    if ahead is None or ahead.prices is None:
        return None
    moved = []
    for key in ahead.prices.keys():
        old, new = w.adapter.price_of(market, key), w.adapter.price_of(shocked, key)
        if old is None or new is None:
            return None
        if old != new:
            moved.append((key, new))
    if len(moved) > 1:
        return None
    return set(ahead.liquidatable) | (ahead.candidates(*moved[0]) if moved else ahead.stale())


def build(cfg, k):
    """The pending-transaction subscription that drives a backrun, from ``[backrun]``: run it
    beside the heads (Runner.services). ``k``: keeper.wiring's Keeper (engine, executor)."""
    from keeper.chain.bundles import RelayClient
    from keeper.chain.mempool import PendingSubscription
    from keeper.executors.backrun import BackrunSender
    from keeper.executors.bundle import BundleSubmitter, MempoolSubmitter

    submitter = (BundleSubmitter(RelayClient(cfg.backrun.relay_url.reveal()))
                 if cfg.backrun.submitter == "bundle" else MempoolSubmitter())
    runner = Backrunner(k.engine, k.engine.responder, BackrunSender(k.executor, submitter))

    async def fetch(tx_hash: str):
        return await k.rpc.request("eth_getTransactionByHash", [tx_hash])
    sub = PendingSubscription(cfg.chain.ws_url.reveal(), runner.on_tx, runner.wanted, fetch)
    sub.backrunner = runner
    return sub
