"""Submitters of a backrun (keeper.executors.backrun): how simulated, priced transactions
reach a block. ``[backrun] submitter`` chooses one.

* ``mempool`` (:class:`MempoolSubmitter`): all signed with consecutive nonces, journaled in
  one write and broadcast in one batch in nonce order, right after the update was seen (as
  the block tick's burst): the fees put them behind it.
* ``bundle`` (:class:`BundleSubmitter`): all of them signed and journaled, then
  ``eth_sendBundle([update, ours...], head + 1)`` to ``[backrun] relay_url`` (Flashbots'
  relay API): the relay includes the bundle whole and in order, or not at all, so nothing
  of ours can be mined without the update before it. The nonces stay taken (TxManager's
  lock is held) until the target block is mined: then what was not included is marked
  ``dropped`` in the journal and the nonces are read again from the node.

``send`` returns, per Ready (by ``id``), the journal rows that will be mined (empty: not
included).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

import structlog

from keeper.chain.bundles import RelayClient
from keeper.chain.mempool import PendingTx
from keeper.errors import ExecutionError, SourceError
from keeper.executors.journal import answer_error, is_already_known

log = structlog.get_logger("keeper.backrun")


class MempoolSubmitter:
    name = "mempool"

    async def send(self, tx, updates: list[PendingTx], ready: list) -> dict[int, list]:
        """All of them signed, journaled in one write, then broadcast in ONE batch in nonce
        order (as the block tick's burst: keeper.executors.burst), under TxManager's lock."""
        out: dict[int, list] = {}
        async with tx.send_lock:
            signed = await sign_all(tx, ready)
            rows = [row for r in ready for row in signed[id(r)]]
            try:
                answers = await tx.rpc.broadcast_many([row.raw_tx for row in rows])
            except SourceError as e:  # unknown whether they arrived: each wait re-broadcasts its own
                log.warning("backrun.broadcast_unconfirmed", txs=len(rows), reason=str(e))
                answers = [None] * len(rows)
            by_hash = dict(zip((row.hash for row in rows), answers, strict=True))
            accepted = []
            for r in ready:
                mine = []
                for row in signed[id(r)]:
                    answer = by_hash[row.hash]
                    err = None if answer is None else answer_error(answer)
                    lg = log.bind(action_key=row.action_key, purpose=row.purpose, behind=updates[-1].hash)
                    if err is not None and not is_already_known(err[0]):
                        tx.journal.mark(row, "failed", err[0])
                        tx.nonces.reset()  # a gap or a used nonce: the next send asks the node
                        lg.warning("tx.refused", nonce=row.nonce, reason=f"node refused the tx: {err[0]}")
                        mine = None
                        continue
                    if answer is not None:
                        accepted.append(row)
                        tx.hook("broadcast", row)
                    lg.info("tx.sent", nonce=row.nonce, tx_hash=row.hash, gas_limit=row.gas_limit,
                            max_fee_per_gas=row.max_fee_per_gas, priority_fee_per_gas=row.priority_fee_per_gas,
                            reason="simulated ok behind the update, within the caps")
                    if mine is not None:
                        mine.append(row)
                out[id(r)] = mine or []  # a refused transaction: the decision is not included
            tx.journal.mark(accepted, "sent", only_open=True)
        return out


async def sign_all(tx, ready: list) -> dict[int, list]:
    """Per Ready (by ``id``), its transactions signed with consecutive nonces, all journaled
    in ONE committed write (before any broadcast: a restart finds them). The caller holds
    TxManager's lock. The day's spending cap counts them together."""
    if tx.chain_id is None:
        tx.chain_id = await tx.rpc.chain_id()
    spent, worst, todo = tx.journal.spent_in_day(), 0, []
    for r in ready:
        for q, gas in zip(r.reqs, r.gas, strict=True):
            worst += r.fees.worst_cost(gas)
            tx.guard.check_daily_spend(worst, spent)
            todo.append((r, q, gas))
    signed: list[dict] = []
    try:
        for r, q, gas in todo:
            nonce = await tx.nonces.take()
            signed.append({"action_key": q.action_key, "sender": tx.address, "nonce": nonce, "attempt": 0,
                           "purpose": q.purpose, "to": q.to, "data": q.data, "value": q.value, "gas_limit": gas,
                           "fees": r.fees, "max_cost_wei": q.max_cost_wei,
                           "signed": tx.sign_now(q.to, q.value, q.data, gas, nonce, r.fees)})
        rows = tx.journal.record_signed_many(signed)
    except BaseException:
        if signed:  # nonces taken and never sent: ask the node again
            tx.nonces.reset()
        raise
    out: dict[int, list] = {id(r): [] for r in ready}
    for (r, _, _), row in zip(todo, rows, strict=True):
        tx.hook("journaled", row)
        out[id(r)].append(row)
    return out


class BundleSubmitter:
    """One open bundle at a time, for the next block: a second backrun before that block
    (a second feed's update) is merged into it (``replacementUuid``: the relay keeps the
    latest), so the block gets every update and every liquidation behind them, in order."""

    name = "bundle"

    def __init__(self, relay: RelayClient, wait_s: float = 30.0, poll_s: float = 0.05):
        self.relay, self.wait_s, self.poll_s = relay, wait_s, poll_s
        self.bundles = self.included = 0
        self._open: _Open | None = None

    async def send(self, tx, updates: list[PendingTx], ready: list) -> dict[int, list]:
        op = self._open
        if op is not None and not op.done.is_set():  # the lock is the open bundle's: merge into it
            await op.submitted.wait()
            if op.done.is_set() or not op.rows:
                raise ExecutionError("the open bundle failed before this backrun could join it")
            signed = await sign_all(tx, ready)
            if op.closed:  # its block was mined while these were signed
                self._forget(tx, [r for rows in signed.values() for r in rows], "the open bundle's block passed")
                raise ExecutionError("the open bundle's block was mined before this backrun could join it")
            op.add(updates, signed)
            try:
                await self._submit(tx, op)
            except (SourceError, ExecutionError):
                self._forget(tx, [r for rows in signed.values() for r in rows], "the relay did not take the bundle")
                raise
            await op.done.wait()
            return {k: rows for k, rows in signed.items() if all(r.hash in op.included for r in rows)}
        op = self._open = _Open(uuid.uuid4().hex)  # before any await: a second backrun joins it
        try:
            async with tx.send_lock:  # the nonces stay the bundle's until its block
                op.target = await tx.rpc.block_number() + 1
                signed = await sign_all(tx, ready)
                op.add(updates, signed)
                try:
                    await self._submit(tx, op)
                except (SourceError, ExecutionError):
                    self._forget(tx, op.rows, "the relay did not take the bundle")
                    raise
                op.submitted.set()
                await self._until_block(tx.rpc, op.target)
                op.closed = True
                receipts = await self._receipts(tx.rpc, [row.hash for row in op.rows])
                op.included = {row.hash for row, rc in zip(op.rows, receipts) if rc is not None}
                if len(op.included) < len(op.rows):
                    self._forget(tx, [r for r in op.rows if r.hash not in op.included],
                                 f"bundle not included in block {op.target}")
                self.included += bool(op.included)
                log.info("bundle.settled", uuid=op.uuid, block=op.target, included=len(op.included), of=len(op.rows))
        finally:
            op.done.set()
            op.submitted.set()
            if self._open is op:
                self._open = None
        return {k: rows for k, rows in signed.items() if all(r.hash in op.included for r in rows)}

    async def _submit(self, tx, op: _Open) -> None:
        for u in op.updates:
            if u.hash not in op.raws:
                raw = await tx.rpc.request("eth_getRawTransactionByHash", [u.hash])
                if not raw:
                    raise ExecutionError(f"the update {u.hash} left the node's pool before the bundle was built")
                op.raws[u.hash] = raw
        txs = [op.raws[x.hash] if isinstance(x, PendingTx) else x.raw_tx for x in op.order]
        await self.relay.send_bundle(txs, op.target, op.uuid)
        self.bundles += 1
        tx.journal.mark(op.rows, "sent", only_open=True)
        log.info("bundle.sent", uuid=op.uuid, block=op.target, txs=len(txs),
                 behind=[u.hash for u in op.updates], ours=[row.hash for row in op.rows])

    async def _until_block(self, rpc, target: int) -> None:
        deadline = time.monotonic() + self.wait_s
        while await rpc.block_number() < target:
            if time.monotonic() > deadline:
                raise ExecutionError(f"block {target} not mined within {self.wait_s:g} s")
            await asyncio.sleep(self.poll_s)

    async def _receipts(self, rpc, hashes: list[str]) -> list:
        for _ in range(20):  # a node may commit a block before it serves its receipts
            receipts = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
            if all(receipts):
                break
            await asyncio.sleep(self.poll_s)
        return receipts

    @staticmethod
    def _forget(tx, rows: list, why: str) -> None:
        """Signed, never mined, and never will be: the nonces go back to the node's count."""
        tx.journal.mark(rows, "dropped", why, only_open=True)
        tx.nonces.reset()
        log.info("bundle.dropped", txs=[r.hash for r in rows], reason=why)


@dataclass
class _Open:
    uuid: str
    target: int = 0  # the block it is for (set under the lock)
    updates: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    raws: dict = field(default_factory=dict)  # update hash -> its raw tx
    included: set = field(default_factory=set)
    closed: bool = False  # its block is mined: nothing joins any more
    submitted: asyncio.Event = field(default_factory=asyncio.Event)  # at the relay once: others may join
    done: asyncio.Event = field(default_factory=asyncio.Event)

    order: list = field(default_factory=list)  # updates and rows, in bundle order

    def add(self, updates: list[PendingTx], signed: dict[int, list]) -> None:
        """A joining backrun's new updates, then its rows, after all that is there: each
        liquidation stays right behind the updates it was simulated with (a later update may
        heal a position, e.g. one whose debt it prices)."""
        known = {u.hash for u in self.updates}
        new = [u for u in updates if u.hash not in known]
        rows = [row for rows in signed.values() for row in rows]
        self.updates += new
        self.rows += rows
        self.order += [*new, *rows]
