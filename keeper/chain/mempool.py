"""Pending transactions pushed by the node: ``eth_subscribe("newPendingTransactions", true)``.

With the ``true`` flag a node that supports it (anvil, geth, reth) sends each pending
transaction's full body; a node that sends hashes only gets each body asked for with
``eth_getTransactionByHash`` (one request per transaction: use a node that sends bodies).
Only transactions whose ``to`` passes ``wanted`` reach ``on_tx``, as a :class:`PendingTx`.

Reconnects like keeper.chain.heads (whose loop it shares); a transaction that arrived while
the socket was down is missed (the block tick still sees its effect one block later).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from keeper.chain.heads import HeadSubscription
from keeper.errors import SourceError

log = structlog.get_logger("keeper.mempool")


@dataclass(frozen=True, slots=True)
class PendingTx:
    """What a backrun needs of a pending transaction."""

    hash: str
    sender: str
    to: str
    data: bytes
    nonce: int
    gas: int
    value: int
    max_fee_per_gas: int  # gasPrice for a legacy transaction
    priority_fee_per_gas: int  # gasPrice for a legacy transaction

    @classmethod
    def from_json(cls, tx: dict) -> PendingTx:
        legacy = tx.get("maxFeePerGas") is None
        fee = int(tx["gasPrice"] if legacy else tx["maxFeePerGas"], 16)
        tip = fee if legacy else int(tx["maxPriorityFeePerGas"], 16)
        data = tx.get("input") or tx.get("data") or "0x"
        return cls(tx["hash"], tx["from"], tx["to"], bytes.fromhex(data[2:]), int(tx["nonce"], 16),
                   int(tx["gas"], 16), int(tx.get("value") or "0x0", 16), fee, tip)


class PendingSubscription(HeadSubscription):
    params = ("newPendingTransactions", True)

    def __init__(self, ws_url: str, on_tx: Callable[[PendingTx], None],
                 wanted: Callable[[str], bool], fetch: Callable[[str], Awaitable[dict | None]] | None = None,
                 retry_s: float = 1.0):
        super().__init__(ws_url, lambda _n: None, retry_s)
        self.on_tx, self.wanted, self.fetch = on_tx, wanted, fetch
        self.seen = 0  # pending transactions announced
        self._fetches: set[asyncio.Task] = set()

    def deliver(self, result) -> None:
        self.seen += 1
        if isinstance(result, str):  # a node that sends hashes only
            if self.fetch is not None:
                task = asyncio.ensure_future(self._fetch(result))
                self._fetches.add(task)
                task.add_done_callback(self._fetches.discard)
            return
        self._take(result)

    def _take(self, tx: dict) -> None:
        to = tx.get("to")
        if to and self.wanted(to):
            try:
                self.on_tx(PendingTx.from_json(tx))
            except (KeyError, ValueError, TypeError) as e:
                log.warning("mempool.malformed", tx=tx.get("hash"), error=str(e))

    async def _fetch(self, tx_hash: str) -> None:
        try:
            tx = await self.fetch(tx_hash)  # type: ignore[misc]
        except SourceError:
            return
        if tx:
            self._take(tx)
