"""TxManager: simulate, price, journal, sign, send, wait, replace. One account, async.

``send(req)``, step by step (each decision is ONE log line, ``tx.*``, with its reason):

1. refuse an action_key the journal already has, or a target off the allow-list (tx.refused);
2. ``eth_call`` from the sender at "pending": a revert raises SimulationReverted with the
   decoded reason (Aave error code, Error(string), panic), nothing signed (tx.refused);
3. ``eth_estimateGas`` + ``gas_margin_bps`` (or ``req.gas_limit``) -> tx.simulated;
4. fees from the next block's base fee bound (the latest block's + 12.5%, or the pending
   block's if higher; keeper.executors.fees) and the request's bid, within the guard's
   ceilings; dry_run stops here
   (tx.dry_run) and returns ``TxOutcome(status="dry_run")``;
5. under one asyncio.Lock: daily cap, nonce, sign, journal row COMMITTED, broadcast (tx.sent);
   the broadcast happens under the lock, so the node sees nonces in order and a refused
   nonce is given back before anyone else takes the next one;
6. poll for the receipt; every ``replace_after_blocks`` blocks without one, re-sign the same
   nonce with fees +12.5% (journaled first; tx.replaced); a tx the node forgot (evicted) is
   broadcast again as is; TxTimeout after ``receipt_timeout_s``; tx.mined / tx.reverted.
   A mined revert is returned (status "reverted"), not raised: its gas is spent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from typing import Any

import structlog

from keeper.chain.rpc import Rpc
from keeper.config import Secret
from keeper.errors import ExecutionError, SimulationReverted, SourceError, TxTimeout
from keeper.executors import ExecutorConfig, TxOutcome, TxRequest
from keeper.executors.fees import bid_tip, next_base_fee_bound
from keeper.executors.guard import AllowList, Fees, Guard, Mode, decode_revert
from keeper.executors.journal import (
    Journal,
    JournalRow,
    NodeError,
    broadcast,
    is_nonce_too_low,
    node_request,
)
from keeper.executors.signer import SignedTx, Signer, load_signer
from keeper.store import Store

Hook = Callable[[str, JournalRow], None]  # test seam: ("journaled" | "broadcast", row)


class NonceManager:
    """The next nonce of one account. Callers hold TxManager's lock around take..send."""

    def __init__(self, rpc: Rpc, address: str):
        self.rpc, self.address = rpc, address
        self._next: int | None = None

    async def take(self) -> int:
        if self._next is None:  # first use, or after a resync: ask the node (mempool included)
            self._next = int(await self.rpc.request("eth_getTransactionCount",
                                                    [self.address, "pending"]), 16)
        nonce, self._next = self._next, self._next + 1
        return nonce

    def seed(self, pending_count: int) -> None:
        """The node's pending transaction count, read ahead (in a batch): used if none is known."""
        if self._next is None:
            self._next = pending_count

    @property
    def known(self) -> bool:
        return self._next is not None

    def give_back(self, nonce: int) -> None:
        """``nonce`` was never broadcast: reuse it (or resync if a later one was taken)."""
        self._next = nonce if self._next == nonce + 1 else None

    def reset(self) -> None:
        self._next = None


class TxManager:
    def __init__(self, rpc: Rpc, signer: Signer, journal: Journal, guard: Guard,
                 cfg: ExecutorConfig, *, hook: Hook | None = None):
        self.rpc, self.signer, self.journal, self.guard, self.cfg = rpc, signer, journal, guard, cfg
        self.nonces = NonceManager(rpc, signer.address)
        self._lock = asyncio.Lock()
        self._hook = hook or (lambda _stage, _row: None)
        self._chain_id: int | None = None
        self._log = structlog.get_logger().bind(sender=signer.address, mode=guard.mode)

    @property
    def address(self) -> str:
        return self.signer.address

    @property
    def send_lock(self) -> asyncio.Lock:
        """Held from taking a nonce to its broadcast (keeper.executors.burst takes it too)."""
        return self._lock

    @property
    def chain_id(self) -> int | None:
        return self._chain_id

    @chain_id.setter
    def chain_id(self, value: int) -> None:
        self._chain_id = value

    def hook(self, stage: str, row: JournalRow) -> None:
        self._hook(stage, row)

    def sign_now(self, to: str, value: int, data: bytes, gas_limit: int, nonce: int, fees: Fees) -> SignedTx:
        """Sign with the chain id already known (no IO)."""
        if self._chain_id is None:
            raise ExecutionError("the chain id is not known yet")
        return self.signer.sign({
            "type": 2, "chainId": self._chain_id, "nonce": nonce, "to": to, "value": value,
            "data": data, "gas": gas_limit, "maxFeePerGas": fees.max_fee_per_gas,
            "maxPriorityFeePerGas": fees.priority_fee_per_gas,
        })

    def already_done(self, action_key: str) -> bool:
        return self.journal.already_done(action_key)

    async def send(self, req: TxRequest, on_sent: Callable[[], None] | None = None) -> TxOutcome:
        """``on_sent``: called once the tx is broadcast (or journaled, when the broadcast is
        unconfirmed), before the wait for its receipt."""
        log = self._log.bind(action_key=req.action_key, purpose=req.purpose, to=req.to,
                             selector="0x" + req.selector.hex(), value=req.value)
        with _refusals_logged(log):
            self._check_not_done(req)
            self.guard.check_target(req.to, req.data)
            await self._simulate(req)
            gas_limit = req.gas_limit or await self._estimate(req)
        base_fee = await self._base_fee()
        log.info("tx.simulated", gas_limit=gas_limit, base_fee=base_fee, reason="eth_call succeeded")
        with _refusals_logged(log):
            tip = bid_tip(self.guard.priority_fee_wei, req.bid_wei, gas_limit) if req.bid_wei else None
            fees = self.guard.initial_fees(base_fee, gas_limit, req.value, req.max_cost_wei, tip)
            worst = fees.worst_cost(gas_limit, req.value)
            if not self.guard.live:
                self.guard.check_daily_spend(worst, self.journal.spent_in_day())
        if not self.guard.live:
            log.info("tx.dry_run", gas_limit=gas_limit, max_fee_per_gas=fees.max_fee_per_gas,
                     priority_fee_per_gas=fees.priority_fee_per_gas, worst_cost_wei=worst,
                     reason="mode is dry_run: simulated, not sent")
            return TxOutcome(req.action_key, "dry_run", gas_limit=gas_limit,
                             max_fee_per_gas=fees.max_fee_per_gas)
        # shielded: a caller cancelled mid-broadcast must not leave a taken nonce half-sent
        row = await asyncio.shield(self._locked_send(req, gas_limit, fees, worst, log))
        if on_sent is not None:
            on_sent()
        return await self._wait([row], log)

    async def _locked_send(self, req: TxRequest, gas_limit: int, fees: Fees, worst: int,
                           log: Any) -> JournalRow:
        async with self._lock:
            with _refusals_logged(log):
                self._check_not_done(req)  # a concurrent send of the same action got here first
                self.guard.check_daily_spend(worst, self.journal.spent_in_day())
            return await self._first_send(req, gas_limit, fees, log)

    async def reconcile(self, wait: bool = True) -> list[TxOutcome]:
        """Start-up: settle the journal against the chain (see Journal.reconcile), then wait
        for what is still pending (replacing it if it lingers). Errors are logged, not raised."""
        async with self._lock:
            outcomes, pending = await self.journal.reconcile(self.rpc)
            self.nonces.reset()
        for group in pending if wait else ():
            log = self._log.bind(action_key=group[0].action_key, purpose=group[0].purpose)
            try:
                outcomes.append(await self._wait(group, log))
            except ExecutionError as e:
                log.error("tx.unsettled", nonce=group[0].nonce, reason=str(e))
        return outcomes

    # -- steps ------------------------------------------------------------------------

    def _check_not_done(self, req: TxRequest) -> None:
        if self.journal.already_done(req.action_key):
            raise ExecutionError(f"action {req.action_key!r} was already sent (tx journal)")

    def _call_params(self, req: TxRequest) -> dict[str, Any]:
        return {"from": self.address, "to": req.to, "data": "0x" + req.data.hex(),
                "value": hex(req.value)}

    async def _simulate(self, req: TxRequest) -> None:
        await self._dry(req, "eth_call")

    async def _estimate(self, req: TxRequest) -> int:
        estimate = int(await self._dry(req, "eth_estimateGas"), 16)
        return estimate * (10_000 + self.cfg.gas_margin_bps) // 10_000

    async def _dry(self, req: TxRequest, method: str) -> Any:
        try:
            return await node_request(self.rpc, method, [self._call_params(req), "pending"])
        except NodeError as e:
            if not e.data and "revert" not in e.message.lower():
                raise ExecutionError(f"{method} failed for {req.purpose}: {e.message}") from None
            why = decode_revert(e.data, e.message)
            raise SimulationReverted(f"{req.purpose}: simulation reverted: {why}") from None

    async def _base_fee(self) -> int:
        """The next block's base fee bound (keeper.executors.fees): latest and pending in one
        round trip; a node without a "pending" block answers for "latest" alone."""
        latest, pending = await self.rpc.batch([("eth_getBlockByNumber", ["latest", False]),
                                                ("eth_getBlockByNumber", ["pending", False])])
        fee = (pending or {}).get("baseFeePerGas")
        return next_base_fee_bound(int(latest["baseFeePerGas"], 16), None if fee is None else int(fee, 16))

    async def _sign(self, to: str, value: int, data: bytes, gas_limit: int, nonce: int,
                    fees: Fees) -> SignedTx:
        if self._chain_id is None:
            self._chain_id = await self.rpc.chain_id()
        return self.sign_now(to, value, data, gas_limit, nonce, fees)

    async def _first_send(self, req: TxRequest, gas_limit: int, fees: Fees, log: Any) -> JournalRow:
        for _ in range(3):
            nonce = await self.nonces.take()
            try:
                signed = await self._sign(req.to, req.value, req.data, gas_limit, nonce, fees)
                row = self.journal.record_signed(
                    action_key=req.action_key, sender=self.address, nonce=nonce, attempt=0,
                    purpose=req.purpose, to=req.to, data=req.data, value=req.value,
                    gas_limit=gas_limit, fees=fees, max_cost_wei=req.max_cost_wei, signed=signed)
            except BaseException:
                self.nonces.give_back(nonce)
                raise
            self._hook("journaled", row)
            ctx = {"nonce": nonce, "tx_hash": row.hash, "gas_limit": gas_limit,
                   "max_fee_per_gas": fees.max_fee_per_gas,
                   "priority_fee_per_gas": fees.priority_fee_per_gas}
            try:
                refusal = await broadcast(self.rpc, signed.raw)
            except SourceError as e:  # may have arrived: keep the nonce, rebroadcast while waiting
                log.warning("tx.sent", **ctx, reason=f"broadcast unconfirmed ({e}): will retry it")
                return row
            if refusal is None:
                self._hook("broadcast", row)
                self.journal.mark(row, "sent", only_open=True)
                log.info("tx.sent", **ctx, reason="simulated ok, within the caps")
                return replace(row, state="sent")
            self.journal.mark(row, "failed", refusal)
            if is_nonce_too_low(refusal):
                self.nonces.reset()  # another sender used it: resync from the node, sign anew
                continue
            self.nonces.give_back(nonce)
            log.warning("tx.refused", **ctx, reason=f"node refused the tx: {refusal}")
            raise ExecutionError(f"node refused the tx for {req.action_key!r}: {refusal}")
        log.warning("tx.refused", reason="nonce too low 3 times in a row")
        raise ExecutionError(f"nonce too low 3 times in a row for {req.action_key!r}: is another"
                             f" process sending from {self.address}?")

    async def wait(self, row: JournalRow, log: Any) -> TxOutcome:
        """The receipt of a transaction sent elsewhere (keeper.executors.burst), as ``send`` waits."""
        return await self._wait([row], log)

    async def _wait(self, group: list[JournalRow], log: Any) -> TxOutcome:
        """Poll until one tx of ``group`` (one nonce) is mined; replace it while it lingers."""
        deadline = time.monotonic() + self.cfg.receipt_timeout_s
        first, latest = group[0], group[-1]
        log = log.bind(nonce=first.nonce)
        since, strikes = await self.rpc.block_number(), 0
        while True:
            calls = [("eth_blockNumber", []), ("eth_getTransactionCount", [first.sender, "latest"]),
                     *[("eth_getTransactionReceipt", [r.hash]) for r in group],
                     ("eth_getTransactionByHash", [latest.hash])]
            try:
                block_s, count_s, *receipts, known = await self.rpc.batch(calls)
            except SourceError as e:
                log.warning("tx.poll_failed", reason=str(e))
            else:
                found = next((rc for rc in receipts if rc), None)
                fresh = self.journal.group(first.sender, first.nonce)
                if found is None and len(fresh) > len(group):  # a cancel of the same nonce (keeper.executors.burst)
                    group, latest = fresh, fresh[-1]
                    continue
                if found is not None:
                    out = self.journal.record_receipt(group, found)
                    (log.info if out.ok else log.warning)(f"tx.{out.status}", tx_hash=out.hash,
                            block=out.block, gas_used=out.gas_used, cost_wei=out.cost_wei,
                            effective_gas_price=out.effective_gas_price,
                            attempts=len(group), reason=f"receipt status {out.status}")
                    return out
                # the nonce is used but no receipt of ours: a node may commit state before
                # it serves the receipt (anvil does), so only after 3 polls in a row
                strikes = strikes + 1 if int(count_s, 16) > first.nonce else 0
                if strikes >= 3:
                    why = f"nonce {first.nonce} was used by another transaction: action not done"
                    self.journal.mark(group, "dropped", why, only_open=True)
                    log.warning("tx.dropped", reason=why)
                    raise ExecutionError(f"{first.action_key!r}: {why}")
                if known is None:  # evicted or never arrived: the same raw tx again (idempotent)
                    with suppress(SourceError):
                        if await broadcast(self.rpc, latest.raw_tx) is None and latest.state == "signed":
                            self.journal.mark(latest, "sent", only_open=True)
                block = int(block_s, 16)
                if block - since >= self.cfg.replace_after_blocks:
                    since = block
                    if len(group) - 1 < self.cfg.max_replacements and first.sender == self.address:
                        new = await self._replace(group, log)
                        if new is not None:
                            group, latest = [*group, new], new
            if time.monotonic() >= deadline:
                raise TxTimeout(
                    f"{first.action_key!r}: nonce {first.nonce} not mined within"
                    f" {self.cfg.receipt_timeout_s:g} s ({len(group)} attempts); the journal keeps"
                    " it and reconcile() settles it later")
            await asyncio.sleep(self.cfg.poll_interval_s)

    async def _replace(self, group: list[JournalRow], log: Any) -> JournalRow | None:
        latest = group[-1]
        base_fee = await self._base_fee()
        fees = self.guard.bumped_fees(latest.fees, base_fee, latest.gas_limit, latest.value,
                                      latest.max_cost_wei)
        why = f"not mined within {self.cfg.replace_after_blocks} blocks"
        if fees is None:
            log.info("tx.replace_skipped", tx_hash=latest.hash, base_fee=base_fee,
                     reason=f"{why}, but a +12.5% bump does not fit under the fee ceiling")
            return None
        extra = fees.worst_cost(latest.gas_limit, latest.value) - max(r.worst_cost for r in group)
        try:
            self.guard.check_daily_spend(max(extra, 0), self.journal.spent_in_day())
        except ExecutionError as e:
            log.info("tx.replace_skipped", tx_hash=latest.hash, reason=f"{why}, but {e}")
            return None
        data = bytes.fromhex(latest.data[2:])
        signed = await self._sign(latest.to_address, latest.value, data, latest.gas_limit,
                                  latest.nonce, fees)
        row = self.journal.record_signed(
            action_key=latest.action_key, sender=latest.sender, nonce=latest.nonce,
            attempt=latest.attempt + 1, purpose=latest.purpose, to=latest.to_address, data=data,
            value=latest.value, gas_limit=latest.gas_limit, fees=fees,
            max_cost_wei=latest.max_cost_wei, signed=signed)
        self._hook("journaled", row)
        ctx = {"tx_hash": row.hash, "replaces": latest.hash, "attempt": row.attempt,
               "max_fee_per_gas": fees.max_fee_per_gas, "priority_fee_per_gas": fees.priority_fee_per_gas}
        try:
            refusal = await broadcast(self.rpc, signed.raw)
        except SourceError as e:
            log.warning("tx.replaced", **ctx, reason=f"{why}; broadcast unconfirmed ({e})")
            return row
        if refusal is not None:  # e.g. underpriced, or nonce too low: the old one was mined
            self.journal.mark(row, "failed", refusal)
            log.info("tx.replace_skipped", **ctx, reason=f"{why}; node refused it: {refusal}")
            return None
        self._hook("broadcast", row)
        self.journal.mark(row, "sent", only_open=True)
        log.info("tx.replaced", **ctx, base_fee=base_fee, reason=why)
        return replace(row, state="sent")


@contextmanager
def _refusals_logged(log: Any) -> Iterator[None]:
    """Log an ExecutionError as ONE ``tx.refused`` line with its reason, then let it go."""
    try:
        yield
    except ExecutionError as e:
        log.warning("tx.refused", reason=str(e))
        raise


def build_tx_manager(cfg: ExecutorConfig, *, mode: Mode, private_key: Secret | None, rpc: Rpc,
                     store: Store, allow: AllowList, hook: Hook | None = None) -> TxManager:
    """The wiring: signer from env key or keystore (ConfigError if none), guard, journal."""
    signer = load_signer(private_key, cfg.keystore, cfg.password_file)
    return TxManager(rpc, signer, Journal(store), Guard.from_config(cfg, allow, mode), cfg, hook=hook)
