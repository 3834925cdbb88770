"""Compound V3 (Comet) behind keeper.protocols.base: reads (reader.py, written against the
real Comet interface), exact math (math.py), planners and calldata (plan.py, topup.py) and
doctor checks (doctor.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from keeper.checks import Check
from keeper.model import Address, ContractView, Decision, Liquidate, Outcome, Position, ProtectRule, Status, TopUp, TxStep
from keeper.prices import PriceBook
from keeper.protocols.base import MarketAdapter, PlanContext
from keeper.dex.deleverage import deleverage_outcome, pairs_of
from keeper.protocols.compound_v3 import deleverage as dl
from keeper.protocols.compound_v3 import plan, triggers
from keeper.protocols.compound_v3.deleverage_reader import delegation, read_dex_inputs
from keeper.protocols.compound_v3.doctor import comet_checks
from keeper.protocols.compound_v3.math import CometAccount, CometMarket, hf_wad
from keeper.protocols.compound_v3.reader import CometAdapter


class CompoundV3(CometAdapter, MarketAdapter[CometMarket, CometAccount]):
    name = "compound_v3"
    price_boxes = True  # price_bands: a box, every price inside all of them at once

    def __init__(self, *args, market_name: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.market_name = market_name or self.label
        self._dex = None  # (block, keeper.dex.deleverage.DexInputs) of the last prepare_protect

    @staticmethod
    def accrued(old: CometMarket | None, new: CometMarket) -> int | None:
        return triggers.accrued(old, new)

    @staticmethod
    def crossing(market: CometMarket, acct: CometAccount, hf_wad: int) -> int | None:
        return triggers.crossing(market, acct, hf_wad)

    @staticmethod
    def projected(market: CometMarket, bps: int) -> tuple[CometMarket, int]:
        return triggers.projected(market, bps)

    @staticmethod
    def at_level(market: CometMarket, level: int) -> CometMarket:
        return triggers.at_level(market, level)

    @staticmethod
    def liquidation_prices(market: CometMarket, acct: CometAccount) -> list[tuple[str, int, bool]]:
        return triggers.liquidation_prices(market, acct)

    @staticmethod
    def price_of(market: CometMarket, key: str) -> int | None:
        try:
            return market.price(key)
        except KeyError:
            return None

    @staticmethod
    def price_bands(market: CometMarket, horizon: CometMarket, acct: CometAccount, low: int | None,
                    high: int | None) -> list[tuple[str, int | None, int | None]]:
        return triggers.price_bands(market, horizon, acct, low, high)

    @staticmethod
    def price_moved(old: CometMarket | None, new: CometMarket) -> tuple[dict[str, int], int] | None:
        return triggers.price_moved(old, new)

    async def contract_health(self, accounts: Sequence[Address], block: int) -> list[ContractView]:
        """Comet's own ``isLiquidatable`` and ``borrowBalanceOf`` of each account."""
        views = await self.contract_views(accounts, block)
        return [ContractView(a, liquidatable, debt=debt) for a, (debt, liquidatable) in zip(accounts, views)]

    async def doctor(self, block: int) -> list[Check]:
        return await comet_checks(self.label, self.comet, self.rpc, block)

    def symbols(self, market: CometMarket) -> set[str]:
        return {market.base_symbol.upper()} | {a.symbol.upper() for a in market.assets}

    def prices_usd(self, market: CometMarket) -> dict[Address, tuple[str, int]]:
        names = self.tokens(market)
        return {t: (names[t], p) for t, p in market.prices_e8.items()
                if t in names and t not in market.unreliable_assets}

    def price_feeds(self, market: CometMarket) -> dict[Address, str]:
        st = self.static
        if st is None:
            return {}
        return {st.base_feed: market.base_symbol, **{a.price_feed: a.symbol for a in st.assets}}

    def tokens(self, market: CometMarket) -> dict[Address, str]:
        return {market.base_token: market.base_symbol, **{a.asset: a.symbol for a in market.assets}}

    def spend_tokens(self, market: CometMarket) -> list[Address]:
        return list(self.tokens(market))

    def approvals(self, market: CometMarket) -> list[tuple[Address, Address]]:
        return [(t, self.comet) for t in self.tokens(market)]  # plan.encode: Approval(.., comet, ..)

    def agrees(self, position: Position, view: ContractView) -> bool:
        """Comet's isLiquidatable reads stored indexes: compare at a block where it accrued."""
        return (position.status == Status.LIQUIDATABLE) == view.liquidatable

    def plan_top_up(self, market: CometMarket, acct: CometAccount, rule: ProtectRule,
                    wallet: Mapping[Address, int]) -> TopUp | None:
        """A wallet top-up first; a deleverage (from the position itself) when the wallet
        cannot pay for the whole target and the rule allows one."""
        hf = hf_wad(market, acct) or 0
        dex = self._dex[1] if self._dex is not None and self._dex[0] == market.block else None
        if rule.closing and (c := dl.comet_deleverage_top_up(self.label, market, acct, hf, rule, dex, self.comet,
                                                              close=True)):
            return c  # the stop-loss (the price book has its asset at or below close_below)
        d = plan.top_up(self.label, market, acct, hf, rule, wallet)
        if (d is None or d.plan.partial) and self._sold_here(market, rule):
            return dl.comet_deleverage_top_up(self.label, market, acct, hf, rule, dex, self.comet) or d
        return d

    def _sold_here(self, market: CometMarket, rule: ProtectRule) -> list[Address]:
        """The collaterals the rule's deleverage actions sell for this market's base token."""
        listed = {a.symbol.upper(): a.asset for a in market.assets}
        return [listed[c] for c, d in pairs_of(rule.actions) if d == market.base_symbol.upper() and c in listed]

    async def prepare_protect(self, market: CometMarket, rules: Sequence[ProtectRule], lenders=()) -> None:
        sold = {a for r in rules if r.contract for a in self._sold_here(market, r)}
        factory = next((r.dex_factory for r in rules if r.dex_factory), None)
        if sold and factory is not None:
            dex = await read_dex_inputs(self.rpc, factory, market.base_token, sorted(sold), lenders, market.block)
            self._dex = None if dex is None else (market.block, dex)

    async def protect_delegation(self, market: CometMarket, rule: ProtectRule, contract: Address, keeper: Address):
        sold = self._sold_here(market, rule)
        if not sold:
            return []
        names = {a.asset: a.symbol for a in market.assets}
        return await delegation(self.rpc, self.comet, rule.account, contract, keeper,
                                "/".join(names[a] for a in sold), market.block)

    def protect_calls(self, contract: Address) -> list[tuple[Address, str]]:
        return [(contract, dl.DELEVERAGE_COMET)]

    def plan_liquidations(self, market: CometMarket, due: Sequence[Position],
                          accounts: Mapping[Address, CometAccount], ctx: PlanContext) -> list[Liquidate]:
        return plan.liquidations(self.label, market, due, accounts, ctx, self.comet)

    def sells(self, market: CometMarket) -> bool:
        return plan.for_sale(market)

    def encode(self, decision: Decision, sender: Address) -> list[TxStep]:
        if isinstance(decision, TopUp) and isinstance(decision.quote, dl.CometDeleverageQuote):
            q = decision.quote
            return [TxStep(q.contract, dl.deleverage_calldata(q), f"deleverage {decision.account} on Comet")]
        if self.static is None:
            raise RuntimeError("the Comet market has not been loaded yet")
        return plan.encode(self.comet, self.static.base_token, decision, sender)

    def realized(self, market: CometMarket, decision: Decision, receipts, prices: PriceBook) -> Outcome:
        if isinstance(decision, TopUp) and isinstance(decision.quote, dl.CometDeleverageQuote):
            q = decision.quote
            return deleverage_outcome(receipts, q.contract, q.borrower, q.collateral, q.debt, q.oracle_out)
        return plan.realized(market, decision, receipts)

    def allowed_calls(self, market: CometMarket) -> list[tuple[Address, str]]:
        return plan.allowed_calls(self.comet, self.tokens(market))


def build(mk, chain) -> list[tuple[str, CompoundV3]]:
    return [(mk.name, CompoundV3(chain.rpc, chain.multicall, chain.logs, mk.comet, mk.name,
                                 market_name=mk.name))]
