"""Send liquidations right behind a pending price update, in its block (the backrun).

keeper.backrun decides (the liquidations a pending update causes, planned on the market with
the update's price); this module sends them, through the same journal, nonces, guard and
``actions`` rows as every other action (keeper.executors.actions), with two differences:

* **Simulation behind the update.** The decisions' transactions are simulated with
  ``eth_simulateV1`` after the pending update(s), in order, in one simulated block
  (keeper.chain.bundles): a plain ``eth_call`` would run them on the state before the update,
  where the positions are still healthy. A decision whose transaction fails there is dropped
  and the rest simulated again; nothing is signed that did not succeed behind the update.
  Gas limits are the simulated gas used + ``gas_margin_bps``.
* **Fees that order them right behind the update.** ``maxFeePerGas`` equal to the update's
  (the lowest of them, when several are pending) and a priority fee no higher than the
  update's: a block ordered by ``maxFeePerGas`` then arrival (anvil) or by tip then arrival
  (most builders) puts ours after the update and ahead of anything priced below it, which
  is every bot that waits for the update's block. Within the guard's caps: a decision whose
  budget cannot pay the update's fee is dropped (the block tick takes it one block later).

Then a submitter (keeper.executors.bundle) sends them: ``mempool`` broadcasts them one after
another (consecutive nonces), ``bundle`` hands ``[update, ours...]`` to a relay. Receipts are
awaited as usual and each action gets its row, its realized profit and its alert.
Decisions whose approvals are not in place are left to the block tick (no approval on this
path).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from keeper.chain.bundles import simulate_in_order
from keeper.chain.mempool import PendingTx
from keeper.errors import ExecutionError, SourceError
from keeper.executors import TxOutcome, TxRequest
from keeper.executors.actions import ActionExecutor, ActionResult, action_key
from keeper.executors.backrun_watch import SentBackruns
from keeper.executors.guard import Fees
from keeper.model import Decision, Liquidate

log = structlog.get_logger("keeper.backrun")


@dataclass(eq=False)
class Ready:
    """One decision ready to go: its requests, then (after the simulation) gas and fees."""

    d: Decision
    reqs: list[TxRequest]
    slots: set[str]
    gas: tuple[int, ...] = ()
    fees: Fees | None = None
    batch: int = 0  # BackrunSender's batch (a later backrun may take its accounts over)


def behind(updates: list[PendingTx]) -> Fees:
    """Fees that sort right behind every one of ``updates`` (see the module docstring)."""
    fee = min(u.max_fee_per_gas for u in updates)
    return Fees(fee, min(fee, min(u.priority_fee_per_gas for u in updates)))


class BackrunSender:
    def __init__(self, executor: ActionExecutor, submitter):
        self.ex, self.tx, self.submitter = executor, executor.tx, submitter
        self.sent = 0  # transactions handed to the submitter
        self.watch = SentBackruns(self.tx)  # sent, not mined: an update seen late may cancel them
        # a backrun not yet handed to the submitter can be taken over by a later one (another
        # update of the same block arrived: the accounts are planned again behind both, with
        # their follow-ups): slot -> the batch that holds it, and per batch the slots taken
        self._open: dict[str, int] = {}
        self._taken: dict[int, set[str]] = {}
        self._batches = 0

    async def recheck(self, updates: list[PendingTx]) -> int:
        """A new update is pending: cancel what of ours would now fail (backrun_watch)."""
        return await self.watch.recheck(updates)

    def replaceable(self) -> set[str]:
        """In-flight slots of backruns not yet handed to the submitter (keeper.backrun plans
        them again when another update arrives)."""
        return set(self._open)

    def submit(self, decisions: list[Decision], adapter, market, updates: list[PendingTx],
               latest: Callable[[], list[PendingTx]] | None = None) -> int:
        """Start one task for the decisions whose accounts are not in flight already.
        ``latest``: the updates pending now (another may arrive while these are simulated:
        then they are simulated again behind all of them before anything is signed)."""
        todo, chained = [], set()
        self._batches += 1
        batch = self._batches
        for d in decisions:
            slots = {f"{d.market}:{a}" for a in d.accounts or ("protocol",)}
            if not isinstance(d, Liquidate):
                continue
            if d.follows:  # keeper.followups: right behind its predecessor here, or not at all
                if slots <= chained:
                    todo.append((d, slots))
                continue
            if slots & self.ex.in_flight:
                if not all(s in self._open for s in slots):
                    continue
                for s in slots:  # an earlier backrun's, not sent yet: this one takes it over
                    self._taken.setdefault(self._open[s], set()).add(s)
            self.ex.in_flight |= slots
            self._open.update((s, batch) for s in slots)
            chained |= slots
            todo.append((d, slots))
        if todo:
            task = asyncio.create_task(self._run(todo, adapter, market, list(updates), latest, batch))
            self.ex.tasks.add(task)  # drained at stop like every action
            task.add_done_callback(self.ex.tasks.discard)
        return len(todo)

    async def _run(self, todo, adapter, market, updates: list[PendingTx], latest=None, batch: int = 0) -> None:
        ready: list[Ready] = []
        try:
            t0 = time.perf_counter()
            ready = self._prepare(todo, adapter, batch)
            ready, simulations = await self._simulate(ready, updates), 1
            for _ in range(3):  # an update that arrived meanwhile may heal a position: behind all of them
                now = latest() if latest is not None else updates
                if not now or [u.hash for u in now] == [u.hash for u in updates]:
                    break
                updates = now
                ready, simulations = await self._simulate(ready, updates), simulations + 1
            t1 = time.perf_counter()
            ready = self._keep(ready, batch)
            if not ready:
                return
            if not self.tx.guard.live:
                for r in ready:
                    log.info("tx.dry_run", action_key=action_key(r.d), gas_limit=r.gas[0],
                             max_fee_per_gas=r.fees.max_fee_per_gas, reason="backrun simulated; mode is dry_run")
                    self._done(r.d, ActionResult(action_key(r.d), "liquidate", "dry_run", expected=r.d.profit_usd_e8))
                return
            self.ex.pending.save_many([(action_key(r.d), r.d) for r in ready])  # a restart finishes them
            sent = await self.submitter.send(self.tx, updates, ready)
            log.debug("backrun.timing", liquidations=len(ready), simulations=simulations,  # bench/latency.py
                      simulated_ms=round((t1 - t0) * 1000, 1), sent_ms=round((time.perf_counter() - t1) * 1000, 1))
            self.sent += sum(len(rows) for rows in sent.values())
            if self.submitter.name == "mempool":  # a bundle is all or nothing: no watch needed
                self.watch.add(ready, sent)
                now = latest() if latest is not None else updates
                if [u.hash for u in now] != [u.hash for u in updates]:  # one came while these were signed
                    await self.watch.recheck(now)
            await self._landed(ready, sent)
            await asyncio.gather(*(self._finish(r, sent.get(id(r)), adapter, market) for r in ready))
        except (ExecutionError, SourceError) as e:
            log.warning("backrun.failed", error=str(e), decisions=len(ready))
            for r in ready:
                if r.slots & self._taken.get(batch, set()):
                    continue  # a later backrun's now
                self._done(r.d, ActionResult(action_key(r.d), "liquidate", "failed", detail=str(e)))
        finally:
            self._close(batch)
            for _d, slots in todo:  # a slot a later backrun took over is that one's to free
                self._free(slots, batch)
            self._taken.pop(batch, None)

    def _keep(self, ready: list[Ready], batch: int) -> list[Ready]:
        """What of ``batch`` is still its own to send (a later backrun may have planned some
        accounts again behind more updates); from here on no account of it can be taken over."""
        taken = self._taken.get(batch, set())
        self._close(batch)
        return [r for r in ready if not r.slots & taken]

    def _close(self, batch: int) -> None:
        for s in [s for s, b in self._open.items() if b == batch]:
            del self._open[s]

    async def _landed(self, ready: list[Ready], sent: dict[int, list], poll_s: float = 0.05,
                      blocks: int = 3) -> None:
        """Free each account as soon as its transactions are mined (receipts polled every
        ``poll_s`` for up to ``blocks`` blocks): the block tick of the update's block then plans
        what is left of those positions (a second collateral, the other half) at once."""
        waiting = {id(r): r for r in ready if sent.get(id(r))}
        rpc, until = self.tx.rpc, None
        while waiting:
            ids = list(waiting)
            calls = [("eth_getTransactionReceipt", [self.watch.replaced.get(row.hash, row.hash)])
                     for i in ids for row in sent[i]]
            *receipts, head = await rpc.batch([*calls, ("eth_blockNumber", [])])
            n = 0
            for i in ids:
                k = len(sent[i])
                if all(receipts[n:n + k]):
                    self.ex.in_flight -= waiting.pop(i).slots
                n += k
            until = until if until is not None else int(head, 16) + blocks
            if int(head, 16) >= until:
                return
            await asyncio.sleep(poll_s)

    def _free(self, slots: set[str], batch: int) -> None:
        """Out of flight, unless a later backrun took them over (then they are its own)."""
        if not slots & self._taken.get(batch, set()):
            self.ex.in_flight -= slots

    def _prepare(self, todo, adapter, batch: int = 0) -> list[Ready]:
        out = []
        me = self.tx.address
        for d, slots in todo:
            key = action_key(d)
            steps = adapter.encode(d, me)
            missing = [ap for s in steps for ap in s.approvals if not self.ex.approvals.is_ready(ap.token, ap.spender)]
            if self.tx.already_done(key) or missing:
                log.info("backrun.skipped", action_key=key, reason="already sent" if not missing
                         else "an approval is not in place: left to the block tick")
                self._free(slots, batch)
                continue
            budget = self.ex.prices.usd_to_wei(d.profit_usd_e8)
            reqs = [TxRequest(to=s.to, data=s.data, purpose=f"backrun: {s.purpose}", max_cost_wei=budget,
                              action_key=key if i == 0 else f"{key}:{i}") for i, s in enumerate(steps)]
            for q in reqs:
                self.tx.guard.check_target(q.to, q.data)
            out.append(Ready(d, reqs, slots, batch=batch))
        return out

    async def _simulate(self, ready: list[Ready], updates: list[PendingTx]) -> list[Ready]:
        """Drop what fails behind the updates until all that is left succeeds; gas and fees."""
        head = [{"from": u.sender, "to": u.to, "data": "0x" + u.data.hex(), "value": hex(u.value),
                 "gas": hex(u.gas)} for u in updates]
        me, margin = self.tx.address, self.tx.cfg.gas_margin_bps
        while ready:
            ours = [{"from": me, "to": q.to, "data": "0x" + q.data.hex(), "value": hex(q.value)}
                    for r in ready for q in r.reqs]
            res = await simulate_in_order(self.tx.rpc, head + ours)
            if not all(c.ok for c in res[:len(head)]):
                log.info("backrun.skipped", update=updates[-1].hash, reason="the update itself fails in simulation")
                return self._drop(ready, ready, "the update fails in simulation")
            res, failed, i = res[len(head):], [], 0
            for r in ready:
                mine = res[i:i + len(r.reqs)]
                i += len(r.reqs)
                if all(c.ok for c in mine):
                    r.gas = tuple(c.gas_used * (10_000 + margin) // 10_000 for c in mine)
                else:
                    failed.append(r)
            if not failed:
                break
            ready = self._drop(ready, failed, "reverts in simulation behind the update")
        fees = behind(updates)
        priced = []
        for r in ready:
            ceiling, bound = self.tx.guard.fee_ceiling(max(r.gas), 0, r.reqs[0].max_cost_wei)
            if ceiling < fees.max_fee_per_gas:
                self._drop([r], [r], f"the update's fee {fees.max_fee_per_gas} wei/gas is above {bound}")
            else:
                r.fees = fees
                priced.append(r)
        return priced

    def _drop(self, ready: list[Ready], dropped: list[Ready], why: str) -> list[Ready]:
        for r in dropped:
            log.info("backrun.dropped", action_key=action_key(r.d), reason=why)
            self._free(r.slots, r.batch)
        return [r for r in ready if r not in dropped]

    async def _finish(self, r: Ready, rows, adapter, market) -> None:
        key = action_key(r.d)
        logc = log.bind(action_key=key, protocol=r.d.protocol, accounts=list(r.d.accounts))
        if not rows:
            self._done(r.d, ActionResult(key, "liquidate", "lost", expected=r.d.profit_usd_e8,
                                         detail="backrun not included"))
            return
        try:
            outs: list[TxOutcome] = [await self.tx.wait(row, logc) for row in rows]
            if (why := self.watch.cancelled(outs)) is not None:
                result = ActionResult(key, "liquidate", "lost", outs[0].hash, r.d.profit_usd_e8,
                                      detail=f"cancelled: {why}")
            elif not all(o.ok for o in outs):
                result = ActionResult(key, "liquidate", "lost", outs[0].hash, r.d.profit_usd_e8,
                                      detail="backrun reverted on chain")
            else:
                result = await self.ex.finish(r.d, adapter, market, outs, logc)
        except (ExecutionError, SourceError) as e:
            result = ActionResult(key, "liquidate", "failed", detail=str(e))
        finally:
            self.watch.done(r)
        self._done(r.d, result)

    def _done(self, d: Decision, r: ActionResult) -> None:
        self.ex.record(d, r)
        if r.result in ("done", "lost", "failed", "dry_run"):
            self.ex.on_alert(d, r)
