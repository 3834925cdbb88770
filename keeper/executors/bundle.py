"""Submitters of a backrun (keeper.executors.backrun): how simulated, priced transactions
reach a block. ``[backrun] submitter`` chooses one.

* ``mempool`` (:class:`MempoolSubmitter`): each transaction signed, journaled and broadcast
  like any other (TxManager), one after another with consecutive nonces, right after the
  update was seen: the fees put them behind it.
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

log = structlog.get_logger("keeper.backrun")


class MempoolSubmitter:
    name = "mempool"

    async def send(self, tx, updates: list[PendingTx], ready: list) -> dict[int, list]:
        out: dict[int, list] = {}
        async with tx.send_lock:
            for r in ready:
                rows = []
                for q, gas in zip(r.reqs, r.gas):
                    lg = log.bind(action_key=q.action_key, purpose=q.purpose, behind=updates[-1].hash)
                    tx.guard.check_daily_spend(r.fees.worst_cost(gas), tx.journal.spent_in_day())
                    rows.append(await tx._first_send(q, gas, r.fees, lg))  # noqa: SLF001
                out[id(r)] = rows
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
            signed = await self._sign(tx, ready)
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
                signed = await self._sign(tx, ready)
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

    async def _sign(self, tx, ready: list) -> dict[int, list]:
        signed: dict[int, list] = {}
        for r in ready:
            rows = []
            for q, gas in zip(r.reqs, r.gas):
                tx.guard.check_daily_spend(r.fees.worst_cost(gas), tx.journal.spent_in_day())
                nonce = await tx.nonces.take()
                try:
                    s = await tx._sign(q.to, q.value, q.data, gas, nonce, r.fees)  # noqa: SLF001
                    rows.append(tx.journal.record_signed(
                        action_key=q.action_key, sender=tx.address, nonce=nonce, attempt=0,
                        purpose=q.purpose, to=q.to, data=q.data, value=q.value, gas_limit=gas,
                        fees=r.fees, max_cost_wei=q.max_cost_wei, signed=s))
                except BaseException:
                    tx.nonces.give_back(nonce)
                    raise
            signed[id(r)] = rows
        return signed

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
