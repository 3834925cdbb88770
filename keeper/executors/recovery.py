"""Finish the actions a crash interrupted, exactly as a live action ends.

A live action ends in :meth:`ActionExecutor._run`: an ``actions`` row, its realized outcome
(the adapter's ``realized`` over the receipts) and its alert. A keeper killed between a
broadcast and the receipt leaves only journal rows, and the decision is gone with the
process. So the executor writes the decision (protocol, market, accounts, block, expected
profit, the protocol's own quote: everything ``encode`` and ``realized`` read) to
``action_pending`` before its first transaction, and deletes it with the ``actions`` row.

At start-up, after the journal is reconciled (``TxManager.reconcile``), every decision
still pending is finished from its journal rows (steps ``key``, ``key:1``, ...):

* no row mined or reverted and none open: nothing happened; forgotten (the next tick
  decides again from fresh state);
* a row still open (the node has not settled it): left pending for the next start-up;
* the first step reverted: ``lost`` (a liquidation) or ``failed`` (a top-up);
* otherwise the receipts are read again and the market is loaded at the decision's block,
  so ``realized`` values the outcome at the decision's prices as the live path does.

The pending decisions are kept by keeper.executors.pending.
"""

from __future__ import annotations

import structlog

from keeper.errors import ExecutionError, SourceError
from keeper.executors import TxOutcome
from keeper.executors.actions import ActionResult
from keeper.executors.journal import OPEN
from keeper.model import Liquidate

log = structlog.get_logger("keeper.executors")

def _step_index(key: str, row_key: str) -> int | None:
    if row_key == key:
        return 0
    rest = row_key[len(key) + 1:] if row_key.startswith(key + ":") else ""
    return int(rest) if rest.isdigit() else None


async def _outcomes(rpc, rows) -> list[TxOutcome]:
    """The receipts of the final rows, read again (the journal keeps no logs)."""
    receipts = await rpc.batch([("eth_getTransactionReceipt", [r.hash]) for r in rows])
    out = []
    for row, rc in zip(rows, receipts, strict=True):
        if not rc:
            continue
        price = int(rc.get("effectiveGasPrice") or hex(row.max_fee_per_gas), 16)
        gas = int(rc["gasUsed"], 16)
        out.append(TxOutcome(row.action_key, "mined" if int(rc["status"], 16) == 1 else "reverted",
                             row.hash, row.nonce, int(rc["blockNumber"], 16), gas, price, gas * price,
                             row.gas_limit, row.max_fee_per_gas, tuple(rc.get("logs") or ())))
    return out


async def finish_interrupted(executor, engine, remember=None) -> list:
    """Finish every pending decision (see the module docstring). ``engine`` gives the
    watches and loads markets; ``remember(positions)`` hands the accounts' positions at the
    decision's block to whoever words the alerts. Returns the ActionResults recorded."""
    watches = {w.key: w for w in engine.watches}
    results = []
    for key, d in executor.pending.all():
        logc = log.bind(action_key=key, protocol=d.protocol, accounts=list(d.accounts), recovered=True)
        rows = [(i, r) for r in executor.tx.journal.rows()
                if (i := _step_index(key, r.action_key)) is not None]
        if any(r.state in OPEN for _, r in rows):
            logc.warning("action.unsettled", reason="a transaction is still in flight; next start-up")
            continue
        final = sorted(((i, r) for i, r in rows if r.state in ("mined", "reverted")), key=lambda x: x[0])
        w = watches.get(d.market)
        if not final or w is None:
            logc.info("action.abandoned", reason="nothing was mined" if w is not None
                      else f"market {d.market} is no longer watched")
            executor.pending.done(key)
            continue
        liquidation = isinstance(d, Liquidate)
        kind = "liquidate" if liquidation else "top_up"
        expected = d.profit_usd_e8 if liquidation else d.plan.expected_hf_wad
        market = await engine.load(w, d.block)
        if remember is not None and d.accounts:
            ev = w.adapter.evaluator(market)
            accounts = await w.adapter.read_accounts(list(d.accounts), market)
            remember(d.market, [ev.position(a, engine.thresholds, False) for a in accounts])
        outs = await _outcomes(executor.rpc, [r for _, r in final])
        if not outs or final[0][0] != 0 or not outs[0].ok:
            first = outs[0].hash if outs else final[0][1].hash
            r = ActionResult(key, kind, "lost" if liquidation else "failed", first, expected,
                             detail="reverted")
        else:
            try:
                r = await executor.finish(d, w.adapter, market, outs, logc)
            except (ExecutionError, SourceError) as e:  # recorded like a live failure
                r = ActionResult(key, kind, "failed", outs[0].hash, expected, detail=str(e))
        r = ActionResult(r.action_key, r.kind, r.result, r.tx_hash, r.expected, r.realized,
                         (r.detail + "; " if r.detail else "") + "finished after a restart")
        executor.record(d, r)
        executor.on_alert(d, r)
        logc.info("action.recovered", result=r.result, realized=r.realized)
        results.append(r)
    return results
