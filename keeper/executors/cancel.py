"""Replace a sent, unmined transaction by a cancel: the same nonce, a 0-value self-transfer of
21,000 gas with fees +12.5% over the nonce's latest attempt (the guard's replacement bump,
within the action's budget), journaled like any attempt. Used by the stale watch of the lean
send path (keeper.executors.burst) and by the watch of sent backruns
(keeper.executors.backrun_watch)."""

from __future__ import annotations

from typing import Any

from keeper.errors import SourceError
from keeper.executors.journal import JournalRow, broadcast

CANCEL_GAS = 21_000


async def cancel(tx: Any, row: JournalRow, purpose: str, base_fee: int, why: str, logc: Any) -> str | None:
    """Send the cancel of ``row``'s nonce (TxManager ``tx``); its hash, or None when it was
    not sent (the bump does not fit the caps, or the node refused it: e.g. the nonce was
    mined after all)."""
    group = tx.journal.group(tx.address, row.nonce)
    last = group[-1] if group else row
    fees = tx.guard.bumped_fees(last.fees, base_fee, CANCEL_GAS, 0, last.max_cost_wei)
    if fees is None:
        logc.info("tx.cancel_skipped", tx_hash=last.hash, reason=f"{why}; a +12.5% bump does not fit the caps")
        return None
    async with tx.send_lock:
        signed = tx.sign_now(tx.address, 0, b"", CANCEL_GAS, last.nonce, fees)
        new = tx.journal.record_signed(
            action_key=last.action_key, sender=tx.address, nonce=last.nonce, attempt=last.attempt + 1,
            purpose=f"cancel {purpose}", to=tx.address, data=b"", value=0,
            gas_limit=CANCEL_GAS, fees=fees, max_cost_wei=last.max_cost_wei, signed=signed)
        try:
            refusal = await broadcast(tx.rpc, signed.raw)
        except SourceError as e:
            refusal = f"broadcast unconfirmed ({e})"
        if refusal is not None:
            tx.journal.mark(new, "failed", refusal)
            logc.info("tx.cancel_skipped", tx_hash=last.hash, reason=f"{why}; node refused: {refusal}")
            return None
        tx.journal.mark(new, "sent", only_open=True)
    logc.info("tx.cancelled", tx_hash=new.hash, replaces=last.hash, nonce=new.nonce,
              max_fee_per_gas=fees.max_fee_per_gas, reason=why)
    return new.hash
