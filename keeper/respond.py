"""After each tick: decisions (pure, keeper.decide with the market's own planners), their
execution (keeper.executors, the only code that signs) and alerts (keeper.notify). The engine
calls ``after_tick`` once per watched market per tick; nothing here blocks the tick on a
receipt or a webhook, and nothing here names a protocol.

Chain reads here go through keeper.chain only: the wallet's balances of the tokens the
market may spend, the gas price and the configured USD feeds. The block tick starts the
balances and feeds at a new block beside its own market read, in the same JSON-RPC batch
(``prefetch``; used only for that block), and the gas price comes from the pushed head
(keeper.chain.headbook) when there is one. The block tick calls ``act`` (decisions, handed
to the executor before anything is logged) then ``report`` (alerts); a scan calls both
through ``after_tick``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence

import structlog

from keeper import protect_alerts
from keeper.chain.erc20 import balances
from keeper.chain.feeds import Feeds
from keeper.chain.multicall import Multicall
from keeper.chain.rpc import Rpc
from keeper.errors import SourceError
from keeper.executors.fees import next_base_fee
from keeper.decide import Policy, Refusal, decide, liquidations_due, top_ups_due
from keeper.dex.view import after_swap
from keeper.model import Decision, Liquidate, Position
from keeper.prices import PriceBook
from keeper.protocols.base import PlanContext

_OF_TOKEN = re.compile(r"\b(\d+) of (0x[0-9a-fA-F]{40})\b")  # "5 of 0xToken" -> "5 WETH"

log = structlog.get_logger("keeper.respond")


class Responder:
    def __init__(self, rpc: Rpc, multicall: Multicall, policy: Policy, executor=None,
                 notifications=None, prices: PriceBook | None = None, feeds: Feeds | None = None,
                 dex=None):
        self.rpc, self.mc, self.policy = rpc, multicall, policy
        self.executor = executor
        self.notifications = notifications
        self.prices = prices or PriceBook(policy.gas_coin)
        self.feeds = feeds
        self.decided = 0
        if executor is not None:
            executor.on_alert = self.action_alert
            executor.on_broadcast = self.before_alert
            executor.min_profit_usd_e8 = policy.min_profit_usd_e8
        self._positions: dict[tuple[str, str], Position] = {}
        self._feeds_block: int | None = None
        self._refusals: dict[str, str] = {}  # this tick's: account -> why it cannot be protected
        self.dex = dex  # keeper.dex.reader.DexReader when [liquidator] contract is configured
        self._lenders: dict[str, list] = {}  # market key -> its flash lenders
        self._prefetched: tuple | None = None  # (block, tokens, balances task, feeds task): prefetch
        self._burst = None  # the burst the last ``act`` started (until_sent)

    def learn(self, adapter, market) -> None:
        """What a freshly loaded market says about prices (every tick, no IO)."""
        self.prices.learn_symbols(adapter.tokens(market))
        self.prices.learn(adapter.prices_usd(market))
        self._lenders[adapter.label] = adapter.flash_lenders(market)  # capital-free and deleverage

    async def refresh_feeds(self, block: int) -> None:
        if self.feeds is not None and self._feeds_block != block:
            self.prices.learn_feeds(await self.feeds.read(block))
            self._feeds_block = block

    async def after_tick(self, w, market, changed: Sequence[Position]) -> list[Decision]:
        """``w``: the engine's Watch (adapter, positions, raw accounts); ``changed``: the
        positions this tick recomputed."""
        decisions = await self.act(w, market)
        self.report(w, changed)
        return decisions

    async def act(self, w, market, named: set | None = None) -> list[Decision]:
        """Decisions on ``w``'s positions as they are now, handed to the executor. The block
        tick calls it before the rest of its work (logs, alerts: ``report``), with ``named``:
        the accounts it recomputed (see ``_candidates``)."""
        adapter = w.adapter
        self.learn(adapter, market)
        if self.executor is not None:  # a new reserve: its approvals in the background
            self.executor.approvals.ensure_soon(adapter.approvals(market))
            self.executor.latest[w.key] = market  # sent liquidations are valued at it (profit_watch)
        decisions: list[Decision] = []
        self._refusals = {}
        self._burst = None
        if self.executor is not None:
            before = self.executor.bursting
            every = _candidates(w, named)
            tops = top_ups_due(self.policy, adapter.market_name, every, self.prices.by_symbol.get)
            due = liquidations_due(self.policy, every)
            sale = self.policy.liquidate and adapter.sells(market)  # e.g. an interrupted absorb's buys
            if tops or due or sale:
                decisions = await self._decide(w, market, tops, due, sale)
            if self.executor.bursting is not before:
                self._burst = self.executor.bursting  # the burst this act started
        return decisions

    async def until_sent(self, timeout_s: float = 1.0) -> None:
        """Wait (at most ``timeout_s``) for the burst ``act`` started to be broadcast: the
        block tick's remaining work then does not take the CPU from the node's simulation
        (2 cores, node and keeper on the same machine: bench/latency.py)."""
        task, self._burst = self._burst, None
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=timeout_s)

    def report(self, w, changed: Sequence[Position]) -> None:
        """Alerts for the positions a tick recomputed (after ``act``)."""
        if self.notifications is not None:
            for p in changed:
                self._positions[(w.key, p.account)] = p
            self.notifications.observe(changed, int(time.time()))
            if self.executor is not None:  # "cannot protect": once, then once recovered
                protect_alerts.update(self.notifications, w.key, self._refusals, w.positions,
                                      int(time.time()))

    def prefetch(self, block: int, watches) -> None:
        """At a new block, beside the engine's market read: start the reads a decision at
        ``block`` would need (the wallet's balances of every token the watched markets may
        spend, in one multicall; the configured feeds), so a tick that decides does not wait
        for them after its own reads. Nothing is cached across blocks."""
        if self.executor is None:
            return
        tokens = sorted({t for w in watches if w.market is not None for t in w.adapter.spend_tokens(w.market)})
        if self._prefetched is not None and self._prefetched[0] == block:
            return
        tasks = [asyncio.ensure_future(balances(self.mc, tokens, self.executor.tx.address, block))]
        if self.feeds is not None and self._feeds_block != block:
            tasks.append(asyncio.ensure_future(self.refresh_feeds(block)))
        for t in tasks:  # a read nobody awaits (no decision this block) must not warn when it fails
            t.add_done_callback(lambda t: t.cancelled() or t.exception())
        self._prefetched = (block, frozenset(tokens), tasks[0], tasks[1] if len(tasks) > 1 else None)

    def _wallet(self, tokens: list[str], me: str, block: int):
        pre = self._prefetched
        if pre is not None and pre[0] == block and set(tokens) <= pre[1]:
            return _subset(pre[2], tokens)
        return balances(self.mc, tokens, me, block)

    def _feeds_for(self, block: int):
        pre = self._prefetched
        if pre is not None and pre[0] == block and pre[3] is not None:
            return pre[3]
        return self.refresh_feeds(block)

    async def _gas_price(self) -> int:
        """The next block's base fee (exact, from the newest pushed head) + the configured
        tip, as a node's ``eth_gasPrice`` answers; read from the node without a pushed head."""
        head = self.rpc.heads.head
        if head is not None:
            return next_base_fee(head.base_fee, head.gas_used, head.gas_limit) + self.executor.tx.guard.priority_fee_wei
        return int(await self.rpc.request("eth_gasPrice", []), 16)

    async def _decide(self, w, market, tops, due, sale: bool = False, submit=None) -> list[Decision]:
        """``submit``: where the decisions go (default: the executor; keeper.backrun: its sender)."""
        adapter, me = w.adapter, self.executor.tx.address
        liq, t0 = bool(due or sale), time.perf_counter()
        # the reads a decision needs, all at once (one round trip's time, not four)
        wallet, _, gas_price, dex, _ = await asyncio.gather(
            self._wallet(list(adapter.spend_tokens(market)), me, market.block),
            adapter.prepare_protect(market, [rule for _, rule in tops],
                                    [ln for group in self._lenders.values() for ln in group])
            if tops else _nothing(),
            self._gas_price() if liq else _nothing(),
            self._dex(w, market) if liq else _nothing(),
            self._feeds_for(market.block) if liq else _nothing())
        ctx = None
        if liq:
            gas_usd = self.prices.gas_cost_usd(self.policy.liquidation_gas * gas_price)
            if gas_usd is None:
                log.warning("decision.skipped", market=w.key, liquidatable=len(due),
                            reason=f"no USD price for the gas coin {self.policy.gas_coin}: add "
                                   f"[prices] feeds or a market whose oracle prices it")
            else:
                ctx = PlanContext(me, wallet, gas_usd, self.policy.min_profit_usd_e8, self.prices,
                                  self.policy.receive_a_token, frozenset(self.policy.protect), dex)
        t1 = time.perf_counter()
        decisions, refused = decide(adapter, market, tops, due, w.accounts, wallet, ctx)
        log.debug("decision.timing", market=w.key, block=market.block, due=len(due),
                  read_ms=round((t1 - t0) * 1000, 1), planned_ms=round((time.perf_counter() - t1) * 1000, 1))
        for r in refused:
            self._refused(w.key, r)
        if decisions:  # sent first: the burst's batch leaves before this tick logs anything
            (submit or self.executor.submit)(decisions, adapter, market)
            await asyncio.sleep(0)
            if submit is None and dex is not None:  # the next market's plans meet the pools these leave
                self._moved(market.block, dex, decisions)  # (after the burst's batch has left)
        for d in decisions:
            log.info("decision.made", kind=type(d).__name__, market=w.key, protocol=d.protocol,
                     accounts=list(d.accounts), block=d.block, reason=d.reason,
                     **({"profit_usd_e8": d.profit_usd_e8} if isinstance(d, Liquidate) else {}))
        self.decided += len(decisions)
        return decisions

    async def decide_for(self, w, market, due: Sequence[Position], submit) -> list[Decision]:
        """Liquidations of ``due`` planned on ``market`` (a what-if market: keeper.backrun),
        handed to ``submit`` instead of the executor."""
        return await self._decide(w, market, [], list(due), submit=submit)

    def _moved(self, block: int, dex, decisions: Sequence[Decision]) -> None:
        """Hand the DEX reader the pools ``decisions`` (in the order they are sent) leave at
        ``block``: a later market's capital-free plans at the same block are made on them, as
        its burst, sent after this one, will meet them (anvil's and geth's "pending" include
        the transactions sent before, so its simulation agrees)."""
        after = dex
        for d in decisions:
            after = after_swap(after, d)
        if after is not dex:
            self.dex.moved(block, after.pools)

    async def _dex(self, w, market):
        """The DEX at the market's block for capital-free plans (None: own capital only)."""
        if self.dex is None:
            return None
        lenders = [ln for group in self._lenders.values() for ln in group]
        try:
            return await self.dex.read(market.block, list(w.adapter.tokens(market)), lenders)
        except SourceError as e:
            log.warning("dex.unread", market=w.key, block=market.block, error=str(e),
                        consequence="own-capital liquidations only this tick")
            return None

    def _refused(self, key: str, r: Refusal) -> None:
        log.warning("protect.refused", market=key, account=r.account, health_factor=r.health_factor_wad,
                    reason=r.reason)
        self._refusals[r.account] = r.reason

    def remember(self, market: str, positions: Sequence[Position]) -> None:
        """Positions known before any tick: an action finished at start-up (executors/recovery)
        words its alert with the accounts as they were at the decision's block."""
        for p in positions:
            self._positions.setdefault((market, p.account), p)

    def action_alert(self, d: Decision, r) -> None:
        """An alert per account the action touched: liquidated, top-up done / partial / failed."""
        if self.notifications is None:
            return
        if isinstance(d, Liquidate):
            kind = "liquidated" if r.result == "done" else f"liquidation_{r.result}"
            words = (f"liquidation {r.result} on {d.protocol}: expected profit "
                     f"{_usd(d.profit_usd_e8)}" + (f", realized {_usd(r.realized)}" if r.realized is not None
                                                   and r.result == "done" else "")
                     + (f", {r.detail}" if r.detail else "") + (f", tx {r.tx_hash}" if r.tx_hash else ""))
        else:
            p = d.plan
            kind = "top_up_partial" if p.partial and r.result == "done" else f"top_up_{r.result}"
            if p.action == "deleverage" and r.detail:  # the Deleveraged event says it all
                words = (f"deleverage {r.result}: {r.detail.removeprefix('deleveraged: ')}"
                         + (f", tx {r.tx_hash}" if r.tx_hash else ""))
            else:
                words = (f"top-up {r.result}: {p.action} {p.amount} of {p.asset}"
                         + (f" (partial: wallet short by {p.shortfall})" if p.partial else "")
                         + (f", health factor now {r.realized}" if r.realized is not None else "")
                         + (f", {r.detail}" if r.detail and not p.partial else "")
                         + (f", tx {r.tx_hash}" if r.tx_hash else ""))
        words = _OF_TOKEN.sub(self._symbol, words)
        for account in d.accounts:
            pos = self._positions.get((d.market, account))
            if pos is not None:
                self._report(pos, kind, words)

    def _symbol(self, m: re.Match) -> str:
        """ "5 of 0xToken" -> "5 WETH" for a token some market named (else as it was)."""
        symbol = self.prices.symbol_of.get(m.group(2).lower())
        return m.group(0) if symbol is None else f"{m.group(1)} {symbol}"

    def before_alert(self, d: Decision) -> None:
        """A deleverage's "before" alert, once its transaction is broadcast (so after its
        simulation passed): the health factor now and what will be sold and repaid (the
        adapter's reason). Its "after" is the ``top_up_done`` alert with the receipt's numbers."""
        if self.notifications is None or isinstance(d, Liquidate) or d.plan.action != "deleverage":
            return
        for account in d.accounts:
            pos = self._positions.get((d.market, account))
            if pos is not None:
                self._report(pos, "deleverage_sent", f"deleverage sent, not yet mined: {d.reason}")

    def _report(self, pos: Position, kind: str, words: str) -> None:
        from keeper.notify.policy import action_alert

        try:
            self.notifications.report(action_alert(pos, kind, words, int(time.time())))
        except ValueError as e:  # an unknown kind is a bug to see, not a reason to stop acting
            log.error("alert.invalid", error=str(e))


async def _nothing() -> None:
    return None


async def _subset(task, tokens: list[str]) -> dict[str, int]:
    got = await task
    return {t: got[t] for t in tokens}


def _usd(e8: int | None) -> str:
    if e8 is None:
        return "?"
    sign = "-" if e8 < 0 else ""
    return f"{sign}${abs(e8) // 10**8:,}.{abs(e8) % 10**8 // 10**6:02d}"


def _candidates(w, named: set | None) -> list:
    """The positions a decision may concern. Every one, unless the watch keeps its triggers
    (``w.ahead``) and the tick says whom it recomputed (``named``): then the liquidatable ones
    as the triggers last kept them, own accounts, and those recomputed now (the triggers
    learn of them after the decisions), by account. 150,000 positions walked twice cost
    ~60-80 ms of a block's decisions."""
    ahead = w.ahead
    if ahead is None or named is None:
        return list(w.positions.values())
    positions = w.positions
    return [positions[a] for a in sorted(ahead.liquidatable | ahead.mine | named) if a in positions]
