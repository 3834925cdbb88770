"""Sent backruns, watched until mined: an update seen late does not make them revert.

With the ``mempool`` submitter, keeper's backrun transactions are simulated behind the updates
pending when they were planned, then signed and broadcast. An update that reaches the node
before them but is seen by keeper after they were signed can be ordered ahead of them in the
block (a higher ``maxFeePerGas``) and change what they meet: a borrower with WETH collateral
and WBTC debt is liquidatable after a WETH fall alone and healthy again after a WBTC fall.

So each new pending update (keeper.backrun) asks :meth:`SentBackruns.recheck` to simulate the
sent backrun transactions not mined yet (the sender's mined nonce read first), in nonce
order, behind ALL the updates pending now (in the order they will be mined, by sender and
nonce), in one ``eth_simulateV1`` at the head. Each one that would fail there is replaced by a
cancel (keeper.executors.cancel: the same nonce, a 0-value self-transfer, fees +12.5%) before
the block, and its action recorded ``lost`` ("cancelled: ..."). Behind all of them is the
safe side: an update priced below ours would be mined after ours, and the cancel then gives
up a liquidation that would have succeeded, never pays for a revert. Bundles need none of
this: the relay refuses a bundle that would fail.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from keeper.chain.bundles import simulate_in_order
from keeper.chain.mempool import PendingTx
from keeper.errors import SourceError
from keeper.executors.cancel import cancel
from keeper.executors.fees import next_base_fee_bound
from keeper.executors.guard import decode_revert

log = structlog.get_logger("keeper.backrun")


class SentBackruns:
    def __init__(self, tx: Any):  # TxManager
        self.tx = tx
        self.live: dict[str, tuple[Any, Any]] = {}  # tx hash -> (Ready, journal row)
        self.cancels: dict[str, str] = {}  # cancel tx hash -> why
        self.replaced: dict[str, str] = {}  # our tx hash -> the cancel that replaced it
        self._lock = asyncio.Lock()  # one recheck at a time: a row is cancelled once

    def add(self, ready: list[Any], sent: dict[int, list]) -> None:
        for r in ready:
            for row in sent.get(id(r)) or ():
                self.live[row.hash] = (r, row)

    def done(self, r: Any) -> None:
        for h in [h for h, (rr, _) in self.live.items() if rr is r]:
            del self.live[h]

    def cancelled(self, outs: list[Any]) -> str | None:
        """Why one of these mined outcomes is a cancel of ours, or None."""
        return next((self.cancels[o.hash] for o in outs if o.hash in self.cancels), None)

    async def recheck(self, updates: list[PendingTx]) -> int:
        """Cancel the sent, unmined backrun transactions that fail behind ``updates`` (all
        pending now); how many were cancelled. A failed read or simulation cancels nothing."""
        if not self.live or not updates:
            return 0
        async with self._lock:
            try:
                return await self._recheck(updates)
            except (SourceError, KeyError, TypeError, ValueError, IndexError) as e:
                log.warning("backrun.recheck_failed", reason=str(e), consequence="nothing cancelled")
                return 0

    async def _recheck(self, updates: list[PendingTx]) -> int:
        tx = self.tx
        count, header = await tx.rpc.batch_raw([("eth_getTransactionCount", [tx.address, "latest"]),
                                                ("eth_getBlockByNumber", ["latest", False])])
        mined_below = int(count["result"], 16)
        at = int(header["result"]["number"], 16)
        base_fee = next_base_fee_bound(int(header["result"]["baseFeePerGas"], 16))
        rows = sorted((v for v in self.live.values() if v[1].nonce >= mined_below), key=lambda v: v[1].nonce)
        if not rows:
            return 0
        head = [{"from": u.sender, "to": u.to, "data": "0x" + u.data.hex(), "value": hex(u.value),
                 "gas": hex(u.gas)} for u in updates]
        ours = [{"from": tx.address, "to": row.to_address, "data": row.data, "value": hex(row.value),
                 "gas": hex(row.gas_limit)} for _, row in rows]
        res = await simulate_in_order(tx.rpc, head + ours, at)
        if not all(c.ok for c in res[:len(head)]):  # an update mined already, or replaced: unknown
            log.info("backrun.recheck_skipped", block=at, reason="a pending update fails in simulation")
            return 0
        n = 0
        for (r, row), c in zip(rows, res[len(head):], strict=True):
            if c.ok or row.hash not in self.live:
                continue
            del self.live[row.hash]
            why = (f"would revert behind {len(updates)} pending update(s) at block {at}: "
                   f"{decode_revert(c.data, c.error or 'reverted')}")
            logc = log.bind(action_key=row.action_key, accounts=list(r.d.accounts))
            h = await cancel(tx, row, row.purpose, base_fee, why, logc)
            if h is not None:
                self.cancels[h], self.replaced[row.hash] = why, h
                n += 1
        return n
