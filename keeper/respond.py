"""After each tick: decisions (pure, keeper.decide), their execution (keeper.executors, the
only code that signs) and alerts (keeper.notify). The engine calls ``after_tick`` once per
market per tick; nothing here blocks the tick on a receipt or a webhook.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import structlog

from keeper.chain.abi import word
from keeper.chain.multicall import Call, Multicall
from keeper.chain.rpc import Rpc
from keeper.decide import Decision, Liquidate, Policy, decide
from keeper.executors.actions import ActionExecutor, ActionResult
from keeper.model import AaveMarketState, Position, Status
from keeper.protocols import aave_v3_tx as enc

log = structlog.get_logger("keeper.respond")


class Responder:
    def __init__(self, rpc: Rpc, multicall: Multicall, policy: Policy,
                 executor: ActionExecutor | None, notifications=None):
        self.rpc, self.mc, self.policy = rpc, multicall, policy
        self.executor = executor
        self.notifications = notifications
        self.decided = 0
        if executor is not None:
            executor.on_alert = self._action_alert
        self._positions: dict[tuple[str, str], Position] = {}

    async def after_tick(self, key: str, market: AaveMarketState, changed: Sequence[Position],
                         every: Sequence[Position], accounts) -> list[Decision]:
        """``changed``: positions this tick recomputed; ``every``: all of the market's."""
        decisions: list[Decision] = []
        if self.executor is not None and isinstance(market, AaveMarketState):  # others: next
            candidates = [p for p in every if p.status == Status.LIQUIDATABLE
                          or p.account.lower() in self.policy.protect]
            if candidates:
                wallet = await self.wallet(market)
                gas_price = int(await self.rpc.request("eth_gasPrice", []), 16)
                decisions = decide(key, market, candidates, accounts, self.policy, wallet, gas_price)
                for d in decisions:
                    log.info("decision.made", kind=type(d).__name__, market=key, account=d.account,
                             block=d.block, reason=d.reason,
                             **({"profit_base": d.profit_base} if isinstance(d, Liquidate) else {}))
                self.decided += len(decisions)
                self.executor.submit(decisions, market)
        if self.notifications is not None:
            for p in changed:
                self._positions[(p.market, p.account)] = p
            self.notifications.observe(changed, int(time.time()))
        return decisions

    async def wallet(self, market: AaveMarketState) -> dict[str, int]:
        """The signer's balance of every reserve token, at the tick's block."""
        assert self.executor is not None
        me = self.executor.tx.address
        raws = await self.mc.run([Call(r.asset, enc.balance_of(me)) for r in market.reserves],
                                 market.block)
        return {r.asset: word(raw) if ok else 0 for r, (ok, raw) in zip(market.reserves, raws)}

    def _action_alert(self, d: Decision, r: ActionResult) -> None:
        if self.notifications is None:
            return
        from keeper.notify.policy import action_alert

        pos = next((p for (m, a), p in self._positions.items() if a == d.account), None)
        if pos is None:
            return
        if isinstance(d, Liquidate):
            kind = "liquidated" if r.result == "done" else f"liquidation_{r.result}"
            words = (f"liquidation {r.result}: repay {d.quote.debt_to_repay} of {d.quote.debt_asset}, "
                     f"expected profit {d.profit_base} (base units)"
                     + (f", tx {r.tx_hash}" if r.tx_hash else ""))
        else:
            kind = "top_up_partial" if d.plan.partial else f"top_up_{r.result}"
            words = (f"top-up {r.result}: {d.plan.action} {d.plan.amount} of {d.plan.asset}"
                     + (f" (partial: wallet short by {d.plan.shortfall})" if d.plan.partial else "")
                     + (f", health factor now {r.realized}" if r.realized is not None else ""))
        try:
            self.notifications.report(action_alert(pos, kind, words, int(time.time())))
        except ValueError as e:  # an unknown kind is a bug to see, not a reason to stop acting
            log.error("alert.invalid", error=str(e))
