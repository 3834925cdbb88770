"""Carry out decisions: the only code that turns a TopUp or a Liquidate into transactions,
the same way for every protocol. The protocol's adapter builds the steps (``encode``, no
IO), re-reads its own view of health (``contract_health``) and reads what happened from the
receipts (``realized``); this module only sends.

Every action: re-read the protocol's view (a liquidation whose accounts are no longer all
liquidatable is a lost race: nothing is spent) -> for each step: approve what is missing ->
TxManager.send, which simulates first, journals before it signs and sends, and in
``dry_run`` stops after the simulation. One action per account at a time; an action key
(``liq:`` / ``topup:`` market, account, block) is never sent twice.

* Liquidate: a simulation that reverts, or a mined revert, means the race was lost (someone
  was first or the position healed): recorded as ``lost``, never retried blindly (the next
  tick decides again from fresh state). Expected and realized profit (USD e8, after gas)
  are logged and stored in the ``actions`` table with the decision's ``route`` (own capital,
  or capital-free: flash source and swap path); ``detail`` adds the amounts the protocol or
  the liquidator contract reported (for capital-free: the profit in the profit token).
* TopUp: after the receipt the protocol's own health factor is read again and recorded; a
  partial top-up (the wallet could not cover the plan) raises an alert.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from keeper.chain.abi import word
from keeper.chain.erc20 import allowance_call, approve_call
from keeper.chain.rpc import Rpc
from keeper.errors import ExecutionError, SimulationReverted, SourceError
from keeper.executors import TxOutcome, TxRequest
from keeper.executors.approvals import Approvals
from keeper.executors.burst import Burst
from keeper.executors.fees import bid_wei
from keeper.executors.pending import PendingActions
from keeper.executors.results import ActionResult, action_key  # noqa: F401  re-exported
from keeper.executors.tx import TxManager
from keeper.model import Approval, Decision, Liquidate, TxStep
from keeper.prices import PriceBook
from keeper.store import Store

log = structlog.get_logger("keeper.executors")
UINT256_MAX = 2**256 - 1
TOP_UP_GAS_CAP_WEI = 10**18  # a top-up protects the user's own loan: the guard's caps bound it

_SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
  action_key TEXT PRIMARY KEY, kind TEXT NOT NULL, market TEXT NOT NULL, account TEXT NOT NULL,
  block INTEGER NOT NULL, result TEXT NOT NULL, expected TEXT, realized TEXT, tx_hash TEXT,
  detail TEXT, created_at REAL NOT NULL, protocol TEXT, route TEXT)
"""


class ActionExecutor:
    def __init__(self, tx: TxManager, rpc: Rpc, store: Store, prices: PriceBook | None = None,
                 on_alert: Callable[[Decision, ActionResult], None] | None = None,
                 bid_share_bps: int = 0):
        self.tx, self.rpc, self.store = tx, rpc, store
        self.bid_share_bps = bid_share_bps  # [liquidator]: share of the profit bid as priority fee
        self.prices = prices or PriceBook()
        self.on_alert = on_alert or (lambda _d, _r: None)
        self.on_broadcast: Callable[[Decision], None] = lambda _d: None  # the last step is out
        self.in_flight: set[str] = set()  # "market:account"
        self.latest: dict[str, object] = {}  # watch key -> its market at the last tick (profit_watch)
        self.min_profit_usd_e8 = 0  # the policy's minimum (the Responder sets it): below it, cancel
        self.tasks: set[asyncio.Task] = set()
        self._approvals: dict[str, asyncio.Lock] = {}
        self.approvals = Approvals(tx, rpc, tx.guard.max_spend_per_tx_wei)  # set up ahead (start-up)
        self._markets: dict[str, asyncio.Lock] = {}  # one action at a time per configured market
        self.pending = PendingActions(store)  # decisions a crash may interrupt (executors/recovery.py)
        self.burst = Burst(self)  # the lean path: a tick's liquidations in one batch
        self.bursting: asyncio.Task | None = None  # the latest burst, until broadcast
        with store.transaction() as db:
            db.execute(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(actions)")}
            if "protocol" not in columns:  # a store written before actions named their protocol
                db.execute("ALTER TABLE actions ADD COLUMN protocol TEXT")
            if "route" not in columns:  # ... or their route (own capital / capital-free)
                db.execute("ALTER TABLE actions ADD COLUMN route TEXT")

    def submit(self, decisions: list[Decision], adapter, market) -> int:
        """Start the decisions without waiting for receipts: live one-transaction liquidations
        together on the lean path (keeper.executors.burst), each other one as its own task."""
        started, lean, chained = 0, [], set()  # chained: slots whose liquidation is in this burst
        for d in decisions:
            slots = {f"{d.market}:{a}" for a in d.accounts or ("protocol",)}
            if isinstance(d, Liquidate) and d.follows:  # keeper.followups: right behind its
                # predecessor in this burst (its in-flight slot is the same), or not at all
                if slots <= chained and (step := self.burst.takes(d, adapter)) is not None:
                    lean.append((d, slots, step))
                    started += 1
                continue
            if slots & self.in_flight or (not d.accounts and _busy(d.market, self.in_flight)):
                continue
            self.in_flight |= slots
            started += 1
            if (step := self.burst.takes(d, adapter)) is not None:
                lean.append((d, slots, step))
                chained |= slots
                continue
            task = asyncio.create_task(self._run(d, adapter, market, slots))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        if lean:
            task = asyncio.create_task(self.burst.run(lean, adapter, market))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            self.bursting = task  # ends once its transactions are broadcast (keeper.engine waits for it)
        return started

    async def drain(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while (left := [*self.tasks, *self.approvals.tasks]) and time.monotonic() < deadline:
            await asyncio.wait(left, timeout=deadline - time.monotonic())  # a burst starts its waits

    async def _run(self, d: Decision, adapter, market, slots: set[str]) -> ActionResult:
        kind = "liquidate" if isinstance(d, Liquidate) else "top_up"
        try:
            # actions on one configured market (one Pool, one Morpho, one Comet) are simulated one after another, each at "pending" on the
            # state the previous one left (a liquidation that moves the market's totals, bad
            # debt or an absorb, cannot make the next one revert after it was simulated); the
            # next one starts once this one's last transaction is broadcast, not mined, so
            # all the liquidations of a tick go out in one block with consecutive nonces
            # (capital-free liquidations of every market share one lane: the pools they trade in)
            lane = (d.lane if isinstance(d, Liquidate) else None) or adapter.market_name
            lock = self._markets.setdefault(lane, asyncio.Lock())
            await lock.acquire()
            held = [True]

            def release() -> None:
                if held[0]:
                    held[0] = False
                    lock.release()
            try:
                r = await self.act(d, adapter, market, release)
            finally:
                release()
        except (ExecutionError, SourceError) as e:
            r = ActionResult(action_key(d), kind, "failed", detail=str(e))
            log.warning("action.failed", action_key=r.action_key, error=str(e))
        finally:
            self.in_flight -= slots
        self.record(d, r)
        if r.result in ("done", "lost", "failed", "dry_run"):
            self.on_alert(d, r)
        return r

    async def act(self, d: Decision, adapter, market,
                  on_sent: Callable[[], None] | None = None) -> ActionResult:
        """``on_sent``: called once the action's last transaction is broadcast."""
        key = action_key(d)
        liquidation = isinstance(d, Liquidate)
        kind = "liquidate" if liquidation else "top_up"
        expected = d.profit_usd_e8 if liquidation else d.plan.expected_hf_wad
        if self.tx.already_done(key):
            return ActionResult(key, kind, "skipped", detail="already sent")
        logc = log.bind(action_key=key, protocol=d.protocol, accounts=list(d.accounts))
        if liquidation and d.accounts:
            views = await adapter.contract_health(list(d.accounts), await self.rpc.block_number())
            healed = [v.account for v in views if not v.liquidatable]
            if healed:  # healed or liquidated by someone else since the tick: spend nothing
                logc.info("liquidation.lost", reason=f"no longer liquidatable at the head: {healed}")
                return ActionResult(key, kind, "lost", expected=expected,
                                    detail=f"no longer liquidatable: {', '.join(healed)}")
        budget = self.prices.usd_to_wei(d.profit_usd_e8) if liquidation else TOP_UP_GAS_CAP_WEI
        outs: list[TxOutcome] = []
        self.pending.save(key, d)  # before the first send: a restart finishes it from here
        bid = bid_wei(budget, self.bid_share_bps) if liquidation else 0
        steps = adapter.encode(d, self.tx.address)
        def sent() -> None:  # the action's last transaction is broadcast, not yet mined
            self.on_broadcast(d)
            if on_sent is not None:
                on_sent()

        for i, step in enumerate(steps):
            last = sent if i == len(steps) - 1 else None
            out = await self._step(step, key if i == 0 else f"{key}:{i}", budget, logc, bid, last)
            if isinstance(out, str):  # "dry_run" | "lost" | "skipped"
                if out == "skipped":
                    continue
                if out == "lost" and liquidation:
                    return ActionResult(key, kind, "lost", outs[0].hash if outs else None, expected)
                if out == "lost":
                    raise ExecutionError(f"{key}: {step.purpose} reverted")
                return ActionResult(key, kind, "dry_run", expected=expected)
            outs.append(out)
        return await self.finish(d, adapter, market, outs, logc)

    async def finish(self, d: Decision, adapter, market, outs: list[TxOutcome], logc) -> ActionResult:
        """The outcome of an action whose steps were mined (live, or after a restart)."""
        key, liquidation = action_key(d), isinstance(d, Liquidate)
        kind = "liquidate" if liquidation else "top_up"
        expected = d.profit_usd_e8 if liquidation else d.plan.expected_hf_wad
        outcome = adapter.realized(market, d, outs, self.prices)
        if not outcome.ok:
            raise ExecutionError(f"{key}: {outcome.detail} ({outs[0].hash})")
        if liquidation:
            gas_usd = self.prices.gas_cost_usd(sum(o.cost_wei or 0 for o in outs)) or 0
            profit = None if outcome.gross_profit_usd_e8 is None else outcome.gross_profit_usd_e8 - gas_usd
            logc.info("liquidation.done", tx=outs[0].hash, expected_profit_usd_e8=expected,
                      realized_profit_usd_e8=profit, realized=outcome.realized, gas_usd_e8=gas_usd,
                      detail=outcome.detail)
            return ActionResult(key, kind, "done", outs[0].hash, expected, profit,
                                detail=f"{d.route}; {outcome.detail}; expected {d.expected}, "
                                       f"realized {outcome.realized}")
        (view,) = await adapter.contract_health([d.account], await self.rpc.block_number())
        logc.info("topup.done", tx=outs[0].hash, health_factor_after=view.health_factor_wad)
        return ActionResult(key, kind, "done", outs[0].hash, expected, view.health_factor_wad,
                            detail="partial: wallet short" if d.plan.partial else outcome.detail)

    async def _step(self, step: TxStep, key: str, budget: int, logc, bid: int = 0,
                    on_sent: Callable[[], None] | None = None) -> TxOutcome | str:
        """One step: approvals, then the send. A string when it ends the action early."""
        for ap in step.approvals:
            out = await self._ensure_allowance(ap, key, budget)
            if out is not None and out.dry_run:
                logc.info("action.dry_run", step=step.purpose, reason="approve simulated, not sent")
                return "dry_run"
        try:
            out = await self.tx.send(TxRequest(to=step.to, data=step.data, purpose=step.purpose,
                                               action_key=key, max_cost_wei=budget, bid_wei=bid),
                                     on_sent=on_sent)
        except SimulationReverted as e:
            logc.info("step.reverted_in_simulation", step=step.purpose, optional=step.optional, reason=str(e))
            return "skipped" if step.optional else "lost"
        if out.dry_run:
            logc.info("action.dry_run", step=step.purpose, reason="simulated; mode is dry_run")
            return "dry_run"
        if not out.ok:
            logc.info("step.reverted", step=step.purpose, tx=out.hash, optional=step.optional)
            return "skipped" if step.optional else "lost"
        return out

    async def _ensure_allowance(self, ap: Approval, key: str, max_cost_wei: int) -> TxOutcome | None:
        """The spender (allow-listed) gets an unlimited allowance once per token, as liquidation
        bots do: per-action approvals would race each other (each ``approve`` overwrites the
        last) when several actions use one token at once. A pair made ready at start-up
        (keeper.executors.approvals) costs nothing here."""
        if self.approvals.is_ready(ap.token, ap.spender):
            return None
        lock = self._approvals.setdefault(f"{ap.token}:{ap.spender}".lower(), asyncio.Lock())
        async with lock:
            have = word(await self.rpc.call(ap.token, allowance_call(ap.token, self.tx.address, ap.spender)))
            if have >= ap.amount:
                return None
            out = await self.tx.send(TxRequest(
                to=ap.token, data=approve_call(ap.spender, UINT256_MAX),
                purpose=f"approve {ap.spender} for {key}", action_key=f"approve:{ap.token}:{key}",
                max_cost_wei=max_cost_wei))
            if out.status == "reverted":
                raise ExecutionError(f"approve for {key} reverted ({out.hash})")
            return out

    def record(self, d: Decision, r: ActionResult) -> None:
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO actions (action_key, kind, market, account, block, result, "
                "expected, realized, tx_hash, detail, created_at, protocol, route) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (r.action_key, r.kind, d.market, ",".join(d.accounts), d.block, r.result,
                 None if r.expected is None else str(r.expected),
                 None if r.realized is None else str(r.realized), r.tx_hash, r.detail, time.time(),
                 d.protocol, d.route if isinstance(d, Liquidate) else None))
            db.execute("DELETE FROM action_pending WHERE action_key = ?", (r.action_key,))


def _busy(market: str, in_flight: set[str]) -> bool:
    """A decision that names no account (Comet's purchase of the collateral it holds for sale)
    waits while any action of its market is in flight: a liquidation that absorbed that
    collateral buys it in its own next step, and the purchase sent beside it would take it
    first (the liquidation's buy then reverts and it absorbs at a loss), or revert itself."""
    return any(s.startswith(market + ":") for s in in_flight)
