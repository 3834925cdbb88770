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
from keeper.decide import Decision, Liquidate, Policy, TopUp, decide
from keeper.executors.actions import ActionExecutor, ActionResult
from keeper.model import Position, Status
from keeper.protocols.aave_v3.model import AaveMarketState
from keeper.protocols.aave_v3 import encode as enc

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
        self.usd_e8: dict[str, int] = {}  # token (lower) -> USD price, 1e8
        self.native: str | None = None  # the gas coin's wrapped token (lower)
        self.morpho_of: dict[str, str] = {}  # watch key -> Morpho address
        self.symbols_of: dict[str, dict[str, str]] = {}  # watch key -> token -> symbol (Morpho)

    async def after_tick(self, key: str, market: AaveMarketState, changed: Sequence[Position],
                         every: Sequence[Position], accounts) -> list[Decision]:
        """``changed``: positions this tick recomputed; ``every``: all of the market's."""
        decisions: list = []
        if self.executor is not None and not isinstance(market, AaveMarketState):
            if self.policy.liquidate or self.policy.protect:
                decisions = await self._others(key, market, every, accounts)
                self.executor.submit(decisions, market)
        elif self.executor is not None:
            self._learn_prices(market)
            protect = self.policy.protect
            candidates = [p for p in every if p.status == Status.LIQUIDATABLE
                          or (p.account.lower() in protect and p.health_factor_wad is not None
                              and p.health_factor_wad < protect[p.account.lower()].trigger_hf_wad)]
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

    def _learn_prices(self, market: AaveMarketState) -> None:
        """USD prices (1e8) by token, from an Aave market, to price gas for the others."""
        if market.base_currency_unit == 10**8:
            self.usd_e8.update({r.asset.lower(): r.price_base for r in market.reserves})
            try:
                self.native = market.by_symbol(self.policy.gas_price_asset).asset.lower()
            except KeyError:
                pass

    def _gas_in(self, token: str, decimals: int, gas_wei: int) -> tuple[int, int] | None:
        """(gas cost in ``token`` units, rounded up; wei per token unit as a ratio helper)."""
        native, tok = self.usd_e8.get(self.native or ""), self.usd_e8.get(token.lower())
        if not native or not tok:
            return None
        return -(-gas_wei * native * 10**decimals // (10**18 * tok)), 0

    def _budget_wei(self, token: str, decimals: int, amount: int) -> int:
        native, tok = self.usd_e8.get(self.native or ""), self.usd_e8.get(token.lower())
        if not native or not tok or amount <= 0:
            return 0
        return amount * tok * 10**18 // (10**decimals * native)

    async def _others(self, key: str, market, every: Sequence[Position], accounts) -> list:
        from dataclasses import replace as _replace

        from keeper.decide_others import decide_comet, decide_morpho
        from keeper.protocols.compound_v3.math import CometMarket

        me = self.executor.tx.address
        tops = await self._other_top_ups(key, market, every, accounts, me)
        own = set(self.policy.protect)  # own accounts are protected, never liquidated
        liq = [p for p in every if p.status == Status.LIQUIDATABLE and p.reliable
               and p.account.lower() not in own and self.policy.liquidate]
        if not liq:
            return tops
        gas_wei = self.policy.liquidation_gas * int(await self.rpc.request("eth_gasPrice", []), 16)
        if isinstance(market, CometMarket):
            for asset, price in market.prices_e8.items():
                self.usd_e8.setdefault(asset.lower(), price)
            token, decimals = market.base_token, liq[0].base_decimals
            self.executor.comet_base[market.comet.lower()] = token
        else:
            token, decimals = market.params.loan_token, liq[0].base_decimals
        gas = self._gas_in(token, decimals, gas_wei)
        if gas is None:
            log.warning("decision.skipped", market=key, reason="no USD price for gas or the token")
            return []
        wallet = word(await self.rpc.call(token, enc.balance_of(me), market.block))
        if isinstance(market, CometMarket):
            gas_base = -(-gas_wei * self.usd_e8[self.native] // 10**18)
            out = decide_comet(key, market, liq, accounts, wallet, gas_base, self.policy.min_profit_base)
            native_usd = self.usd_e8[self.native]  # profit is in 1e8 USD: as wei of the gas coin
            out = [_replace(d, budget_wei=max(d.profit_base, 0) * 10**18 // native_usd) for d in out]
        else:
            out = decide_morpho(key, market, liq, accounts, self.base_morpho(key), wallet, gas[0], 0)
            out = [_replace(d, budget_wei=self._budget_wei(token, decimals, d.profit_loan)) for d in out]
        out = tops + out
        for d in out:
            log.info("decision.made", kind=type(d).__name__, market=key, block=d.block, reason=d.reason)
        self.decided += len(out)
        return out

    async def _other_top_ups(self, key: str, market, every: Sequence[Position], accounts, me: str) -> list:
        from keeper.decide_others import decide_top_ups
        from keeper.protocols.compound_v3.math import CometMarket

        protect = self.policy.protect
        mine = [p for p in every if p.account.lower() in protect and p.health_factor_wad is not None
                and p.health_factor_wad < protect[p.account.lower()].trigger_hf_wad]
        if not mine:  # nobody below a trigger: no wallet read this block
            return []
        if isinstance(market, CometMarket):
            symbols = {market.base_token: market.base_symbol, **{a.asset: a.symbol for a in market.assets}}
            target = market.comet
        else:
            symbols, target = self.symbols_of.get(key, {}), self.morpho_of[key]
        raws = await self.mc.run([Call(t, enc.balance_of(me)) for t in symbols], market.block)
        wallet = {t: word(raw) if ok else 0 for t, (ok, raw) in zip(symbols, raws)}
        return decide_top_ups(key, market, mine, accounts, self.policy.protect, symbols, wallet, target)

    async def wallet(self, market: AaveMarketState) -> dict[str, int]:
        """The signer's balance of every reserve token, at the tick's block."""
        assert self.executor is not None
        me = self.executor.tx.address
        raws = await self.mc.run([Call(r.asset, enc.balance_of(me)) for r in market.reserves],
                                 market.block)
        return {r.asset: word(raw) if ok else 0 for r, (ok, raw) in zip(market.reserves, raws)}

    def base_morpho(self, key: str) -> str:
        return self.morpho_of[key]

    def _action_alert(self, d: Decision, r: ActionResult) -> None:
        if self.notifications is None or not isinstance(d, (Liquidate, TopUp)):
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
