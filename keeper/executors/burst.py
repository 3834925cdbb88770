"""The lean send path: every liquidation one tick decided for one market, sent at once.

ActionExecutor hands over each live liquidation whose steps are ONE transaction with its
approvals in place (set up at start-up); anything else takes the step-by-step path
(keeper.executors.actions). Here, with no serial round trip between the tick and the send:

1. one JSON-RPC batch: the latest and pending block headers (the base fee, read once for
   the whole burst; no header at all when the node pushed the decisions' block or a later
   one over ``newHeads``: keeper.chain.headbook), the sender's pending nonce when none is
   known (it is then kept locally, and read again only after a refusal), for an account whose
   previous liquidation is still unconfirmed that transaction's receipt, and the simulation
   of every liquidation at "pending" in ONE ``eth_simulateV1`` (one after another in nonce
   order, as they will be mined; each one's gas used, + ``gas_margin_bps``, is its gas
   limit). Mandatory: a liquidation whose simulation reverts is dropped, nothing signed. A
   node without ``eth_simulateV1`` gets one more batch instead: ``eth_call`` (the
   simulation) + ``eth_estimateGas`` (the gas limit) per liquidation;
2. fees per liquidation from that base fee and its bid (keeper.executors.fees), within the
   guard's caps and the daily cap; consecutive nonces; all signed, journaled in ONE committed
   write, broadcast in ONE batch (in nonce order), under TxManager's send lock;
3. each transaction's receipt is awaited in its own task (TxManager.wait, replacement as
   usual); the outcome is read by the adapter (``realized``) as on the other path.

An account is busy only until its liquidation is broadcast: a later tick may liquidate it
again once the plan accounts for the first, i.e. the first transaction's receipt is in a
block at or before the new decision's block (checked in the same batch); otherwise the new
decision is deferred (nothing recorded: the next tick decides again).

Drop stale (:class:`StaleWatch`): while liquidations are unconfirmed, every new head is
checked (the sender's mined nonce; the liquidations not yet mined simulated again at that
head, in nonce order); one that would now revert (someone else took it, the account healed) and is not
mined is replaced by a cancel: the same nonce, a 0-value self-transfer of 21,000 gas with
fees +12.5% (the guard's replacement bump, within the action's budget), so it is not mined
to revert. The action is then recorded ``lost`` ("cancelled"). So is one that would still
succeed but no longer pays: its profit at the head, from the simulation's logs and the
head's prices, minus gas at the current fees, below the policy's minimum
(keeper.executors.profit_watch).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from keeper.errors import ExecutionError, SourceError
from keeper.executors.fees import bid_tip, bid_wei, next_base_fee, next_base_fee_bound
from keeper.executors.guard import decode_revert
from keeper.executors.cancel import cancel
from keeper.executors.profit_watch import ProfitCheck
from keeper.executors.journal import (
    JournalRow,
    answer_error,
    is_already_known,
    is_nonce_too_low,
)
from keeper.executors.results import ActionResult, action_key
from keeper.model import Liquidate, TxStep

log = structlog.get_logger("keeper.executors")
WATCH_S = 0.1  # how often the stale watch asks for the head while liquidations are unconfirmed


@dataclass
class Item:
    d: Liquidate
    key: str
    slots: set[str]
    step: TxStep
    budget: int
    bid: int
    logc: Any
    params: dict[str, Any] = field(default_factory=dict)
    row: JournalRow | None = None
    adapter: Any = None  # its market's adapter (values the simulated logs: profit_watch)


class Burst:
    def __init__(self, ex: Any):  # the ActionExecutor that owns it (its tx, store, approvals)
        self.ex = ex
        self.unconfirmed: dict[str, tuple[str, int]] = {}  # slot -> (tx hash, decision block)
        self.watch = StaleWatch(self)
        self.simulate_v1 = True  # until the node says it does not serve eth_simulateV1
        self.timing: dict[str, float] = {}  # the last burst's phases (logged with burst.sent)

    def takes(self, d: Any, adapter: Any) -> TxStep | None:
        """The one step of a live liquidation ready for the lean path, or None."""
        if not isinstance(d, Liquidate) or not self.ex.tx.guard.live:
            return None
        steps = adapter.encode(d, self.ex.tx.address)
        if len(steps) != 1 or steps[0].optional:
            return None
        if any(not self.ex.approvals.is_ready(a.token, a.spender) for a in steps[0].approvals):
            return None
        return steps[0]

    async def run(self, batch: list[tuple[Liquidate, set[str], TxStep]], adapter: Any, market: Any) -> None:
        ex, tx = self.ex, self.ex.tx
        items: list[Item] = []
        for d, slots, step in batch:
            key = action_key(d)
            logc = log.bind(action_key=key, protocol=d.protocol, accounts=list(d.accounts))
            if tx.already_done(key):
                self._end(d, slots, ActionResult(key, "liquidate", "skipped", detail="already sent"))
                continue
            budget = ex.prices.usd_to_wei(d.profit_usd_e8)
            items.append(Item(d, key, slots, step, budget, bid_wei(budget, ex.bid_share_bps), logc,
                              {"from": tx.address, "to": step.to, "data": "0x" + step.data.hex(),
                               "value": "0x0"}, adapter=adapter))
        if not items:
            return
        try:
            ex.pending.save_many([(i.key, i.d) for i in items])  # before any send: a restart finishes them
            async with tx.send_lock:
                sent = await self._send(items)
        except (ExecutionError, SourceError) as e:
            for i in items:
                if i.row is None:
                    self._end(i.d, i.slots, ActionResult(i.key, "liquidate", "failed", detail=str(e)))
            log.warning("burst.failed", liquidations=len(items), error=str(e))
            return
        for i in sent:
            self.unconfirmed.update({s: (i.row.hash, i.d.block) for s in i.slots})
            ex.in_flight -= i.slots  # busy until broadcast, not until mined
            task = asyncio.create_task(self._wait(i, adapter, market))
            ex.tasks.add(task)
            task.add_done_callback(ex.tasks.discard)
        self.watch.add(sent)

    async def _send(self, items: list[Item]) -> list[Item]:
        ex, tx = self.ex, self.ex.tx
        # the base fee from the pushed head of the decisions' block or later (no header read)
        head = tx.rpc.heads.at_least(max(i.d.block for i in items))
        calls: list[tuple[str, list[Any]]] = [] if head is not None else [
            ("eth_getBlockByNumber", ["latest", False]), ("eth_getBlockByNumber", ["pending", False])]
        nonce_at = len(calls)
        if not tx.nonces.known:
            calls.append(("eth_getTransactionCount", [tx.address, "pending"]))
        where: dict[str, int] = {}  # receipts of unconfirmed earlier liquidations of these accounts
        for i in items:
            for s in i.slots:
                if s in self.unconfirmed and s not in where:
                    where[s] = len(calls)
                    calls.append(("eth_getTransactionReceipt", [self.unconfirmed[s][0]]))
        sim = len(calls)
        if self.simulate_v1:  # all of them in order, as they will be mined, in one execution
            calls.append(_simulate_v1(items, "pending"))
        t0 = time.perf_counter()
        answers = await tx.rpc.batch_raw(calls)
        results = _simulated(items, answers[sim]) if self.simulate_v1 else None
        if results is None:
            results = await self.simulate(items, "pending")
        self.timing = {"simulated_ms": round((time.perf_counter() - t0) * 1000, 1)}
        if head is not None:
            base_fee = next_base_fee_bound(head.base_fee, next_base_fee(head.base_fee, head.gas_used, head.gas_limit))
        else:
            latest, pending = answers[0].get("result"), answers[1].get("result")
            if not latest or "baseFeePerGas" not in latest:
                raise SourceError("the latest block has no base fee")
            pending_fee = (pending or {}).get("baseFeePerGas")
            base_fee = next_base_fee_bound(int(latest["baseFeePerGas"], 16),
                                           None if pending_fee is None else int(pending_fee, 16))
        if not tx.nonces.known:
            tx.nonces.seed(int(answers[nonce_at]["result"], 16))
        spent, worst_sum, ready = tx.journal.spent_in_day(), 0, []
        for i, (gas_used, why) in zip(items, results, strict=True):
            deferred = self._deferred(i, where, answers)
            if deferred:
                i.logc.info("liquidation.deferred", reason=deferred)
                ex.pending.done(i.key)
                ex.in_flight -= i.slots
                continue
            if why is not None:
                i.logc.info("step.reverted_in_simulation", step=i.step.purpose, reason=why)
                self._end(i.d, i.slots, ActionResult(i.key, "liquidate", "lost", expected=i.d.profit_usd_e8,
                                                     detail=f"simulation reverted: {why}"))
                continue
            gas = gas_used * (10_000 + tx.cfg.gas_margin_bps) // 10_000
            try:
                tip = bid_tip(tx.guard.priority_fee_wei, i.bid, gas) if i.bid else None
                fees = tx.guard.initial_fees(base_fee, gas, 0, i.budget, tip)
                tx.guard.check_daily_spend(worst_sum + fees.worst_cost(gas), spent)
            except ExecutionError as e:
                i.logc.warning("tx.refused", reason=str(e))
                self._end(i.d, i.slots, ActionResult(i.key, "liquidate", "failed", detail=str(e)))
                continue
            worst_sum += fees.worst_cost(gas)
            ready.append((i, gas, fees))
        return await self._sign_and_broadcast(ready, base_fee)

    async def simulate(self, items: list[Item], tag: str,
                       logs: list[list[dict[str, Any]]] | None = None) -> list[tuple[int, str | None]]:
        """Per liquidation (gas used, None) or (0, revert reason), at block ``tag``: in one
        ``eth_simulateV1`` (in order, one after another; each call's logs appended to
        ``logs``), or where the node lacks it an ``eth_call`` + ``eth_estimateGas`` each, in
        one batch (no logs)."""
        rpc = self.ex.tx.rpc
        if self.simulate_v1:
            (answer,) = await rpc.batch_raw([_simulate_v1(items, tag)])
            if (results := _simulated(items, answer, logs)) is not None:
                return results
            self.simulate_v1 = False
            log.info("burst.no_simulate_v1", reason="the node does not serve eth_simulateV1: "
                                                   "eth_call + eth_estimateGas per liquidation")
        got = await rpc.batch_raw([c for i in items for c in (("eth_call", [i.params, tag]),
                                                              ("eth_estimateGas", [i.params, tag]))])
        return [_pair(got[2 * k], got[2 * k + 1]) for k in range(len(items))]

    def _deferred(self, i: Item, where: dict[str, int], answers: list[dict[str, Any]]) -> str:
        """Why ``i`` waits for a later tick: an earlier liquidation of its account that its
        plan cannot have seen (not mined at or before the decision's block)."""
        for s in i.slots:
            if s in where:
                rc = answers[where[s]].get("result")
                if not rc or int(rc["blockNumber"], 16) > i.d.block:
                    return f"the previous liquidation of {s} is not in block {i.d.block} or earlier"
        return ""

    async def _sign_and_broadcast(self, ready: list[tuple[Item, int, Any]], base_fee: int) -> list[Item]:
        tx = self.ex.tx
        if not ready:
            return []
        if tx.chain_id is None:
            tx.chain_id = await tx.rpc.chain_id()
        signed, t_sign = [], time.perf_counter()
        for i, gas, fees in ready:
            nonce = await tx.nonces.take()
            signed.append({"action_key": i.key, "sender": tx.address, "nonce": nonce, "attempt": 0,
                           "purpose": i.step.purpose, "to": i.step.to, "data": i.step.data, "value": 0,
                           "gas_limit": gas, "fees": fees, "max_cost_wei": i.budget,
                           "signed": tx.sign_now(i.step.to, 0, i.step.data, gas, nonce, fees)})
        rows = tx.journal.record_signed_many(signed)
        t1 = time.perf_counter()
        for (i, _, _), row in zip(ready, rows, strict=True):
            i.row = row
            tx.hook("journaled", row)
        try:
            answers = await tx.rpc.broadcast_many([r.raw_tx for r in rows])
        except SourceError as e:  # unknown whether they arrived: each wait re-broadcasts its own
            log.warning("burst.broadcast_unconfirmed", txs=len(rows), reason=str(e))
            return [i for i, _, _ in ready]
        t2 = time.perf_counter()
        sent, accepted = [], []
        for (i, _, fees), row, answer in zip(ready, rows, answers, strict=True):
            err = None if answer is None else answer_error(answer)
            if err is not None and not is_already_known(err[0]):
                tx.journal.mark(row, "failed", err[0])
                tx.nonces.reset()  # a gap or a used nonce: the next send asks the node
                i.logc.warning("tx.refused", nonce=row.nonce, reason=f"node refused the tx: {err[0]}")
                if is_nonce_too_low(err[0]):
                    i.logc.warning("tx.refused", reason="nonce too low: is another process sending?")
                self._end(i.d, i.slots, ActionResult(i.key, "liquidate", "failed", detail=err[0]))
                continue
            sent.append(i)
            if answer is not None:
                accepted.append(row)
                tx.hook("broadcast", row)
            i.logc.info("tx.sent", nonce=row.nonce, tx_hash=row.hash, gas_limit=row.gas_limit,
                        max_fee_per_gas=fees.max_fee_per_gas, priority_fee_per_gas=fees.priority_fee_per_gas,
                        base_fee=base_fee, reason="simulated ok in the burst's batch, within the caps")
        tx.journal.mark(accepted, "sent", only_open=True)
        log.info("burst.sent", liquidations=len(ready), sent=len(sent), block=ready[0][0].d.block, **self.timing,
                 signed_journaled_ms=round((t1 - t_sign) * 1000, 1), broadcast_ms=round((t2 - t1) * 1000, 1))
        return sent

    async def _wait(self, i: Item, adapter: Any, market: Any) -> None:
        assert i.row is not None
        try:
            out = await self.ex.tx.wait(i.row, i.logc)
            if out.hash in self.watch.cancels:
                r = ActionResult(i.key, "liquidate", "lost", out.hash, i.d.profit_usd_e8,
                                 detail=f"cancelled: {self.watch.cancels[out.hash]}")
            elif not out.ok:
                i.logc.info("step.reverted", step=i.step.purpose, tx=out.hash)
                r = ActionResult(i.key, "liquidate", "lost", out.hash, i.d.profit_usd_e8)
            else:
                r = await self.ex.finish(i.d, adapter, market, [out], i.logc)
        except (ExecutionError, SourceError) as e:
            r = ActionResult(i.key, "liquidate", "failed", i.row.hash, detail=str(e))
            i.logc.warning("action.failed", error=str(e))
        finally:
            self.watch.done(i)
            for s in i.slots:
                if self.unconfirmed.get(s, ("",))[0] == i.row.hash:
                    del self.unconfirmed[s]
        self._end(i.d, set(), r)

    def _end(self, d: Liquidate, slots: set[str], r: ActionResult) -> None:
        self.ex.in_flight -= slots
        self.ex.record(d, r)
        if r.result in ("done", "lost", "failed"):
            self.ex.on_alert(d, r)


def _simulate_v1(items: list[Item], tag: str) -> tuple[str, list[Any]]:
    return ("eth_simulateV1", [{"blockStateCalls": [{"calls": [i.params for i in items]}],
                                "validation": False}, tag])


def _simulated(items: list[Item], answer: dict[str, Any],
               logs: list[list[dict[str, Any]]] | None = None) -> list[tuple[int, str | None]] | None:
    """Per liquidation (gas used, None) or (0, revert reason) from ``eth_simulateV1``;
    None when the node does not serve it. ``logs``: each call's logs are appended."""
    try:
        calls = answer["result"][0]["calls"]
    except (KeyError, IndexError, TypeError):
        return None
    if len(calls) != len(items):
        return None
    if logs is not None:
        logs.extend(c.get("logs") or [] for c in calls)
    out = []
    for c in calls:
        if int(c["status"], 16) == 1:
            out.append((int(c["gasUsed"], 16), None))
            continue
        err = c.get("error") or {}
        data = c.get("returnData") or (err.get("data") if isinstance(err, dict) else None) or "0x"
        message = str(err.get("message", "reverted")) if isinstance(err, dict) else str(err)
        out.append((0, decode_revert(bytes.fromhex(data[2:]), message)))
    return out


def _pair(call: dict[str, Any], estimate: dict[str, Any]) -> tuple[int, str | None]:
    """(gas estimate, None), or (0, revert reason) when the eth_call or the estimate failed."""
    err = answer_error(call) or answer_error(estimate)
    if err is not None:
        return 0, decode_revert(err[1], err[0])
    return int(estimate["result"], 16), None


class StaleWatch:
    """Cancel unconfirmed liquidations that a new head has made stale (module docstring)."""

    def __init__(self, burst: Burst):
        self.burst = burst
        self.items: dict[str, Item] = {}  # tx hash -> item
        self.cancels: dict[str, str] = {}  # cancel tx hash -> why
        self.task: asyncio.Task | None = None
        self.profit = ProfitCheck(burst.ex)  # still succeeds, no longer pays (profit_watch)

    def add(self, items: list[Item]) -> None:
        self.items.update({i.row.hash: i for i in items if i.row is not None})
        if self.items and (self.task is None or self.task.done()):
            self.task = asyncio.create_task(self._loop())
            self.burst.ex.tasks.add(self.task)
            self.task.add_done_callback(self.burst.ex.tasks.discard)

    def done(self, i: Item) -> None:
        if i.row is not None:
            self.items.pop(i.row.hash, None)

    async def _loop(self) -> None:
        tx, seen = self.burst.ex.tx, None
        while self.items:
            await asyncio.sleep(WATCH_S)
            if (held := self.profit.held) is not None:  # the engine's market may have reached its head
                for i, why in self.profit.due(self.items):
                    await self._cancel(i, held.base_fee, why)
            try:
                head = await tx.rpc.block_number()
                live = [i for i in self.items.values() if i.d.block < head and i.row is not None]
                if head == seen or not live:
                    continue
                seen = head
                # the mined nonce first (cheap); only what is still unmined is simulated again,
                # at "latest", in nonce order as it would be mined
                count, header = await tx.rpc.batch_raw([("eth_getTransactionCount", [tx.address, "latest"]),
                                                        ("eth_getBlockByNumber", ["latest", False])])
                mined_below = int(count["result"], 16)
                base_fee = next_base_fee_bound(int(header["result"]["baseFeePerGas"], 16))
                at = int(header["result"]["number"], 16)
                live = sorted((i for i in live if i.row.nonce >= mined_below), key=lambda i: i.row.nonce)
                logs: list[list[dict[str, Any]]] = []
                results = await self.burst.simulate(live, hex(at), logs) if live else []
            except (SourceError, KeyError, TypeError, ValueError) as e:
                log.warning("stale_watch.failed", reason=str(e))
                continue
            for i, (_, why) in zip(live, results, strict=True):
                if why is not None:
                    await self._cancel(i, base_fee, f"would revert at block {at}: {why}")
            self.profit.hold(at, base_fee, live, results, logs)

    async def _cancel(self, i: Item, base_fee: int, why: str) -> None:
        self.items.pop(i.row.hash, None)  # one cancel per liquidation
        h = await cancel(self.burst.ex.tx, i.row, i.step.purpose, base_fee, why, i.logc)
        if h is not None:
            self.cancels[h] = why
