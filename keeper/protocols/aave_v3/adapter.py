"""Aave V3 behind keeper.protocols.base: reads (reader.py, lens.py), exact math (math.py,
health.py, fast.py), planners (liquidation.py, topup.py, plan.py), calldata (encode.py) and
doctor checks (doctor.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from keeper.checks import Check
from keeper.dex.liquidator import FLASH_AAVE
from keeper.dex.view import FlashLender
from keeper.model import Address, ContractView, Decision, Liquidate, Outcome, Position, ProtectRule, TopUp, TxStep
from keeper.prices import PriceBook
from keeper.protocols.aave_v3 import after, boost
from keeper.protocols.aave_v3 import deleverage as dl
from keeper.protocols.aave_v3 import interest, plan, price_bands, triggers
from keeper.protocols.aave_v3.deleverage_reader import delegation, read_dex_inputs
from keeper.protocols.aave_v3.doctor import aave_checks
from keeper.protocols.aave_v3 import encode as enc
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState
from keeper.protocols.aave_v3.reader import AaveV3Adapter
from keeper.protocols.base import MarketAdapter, PlanContext
from keeper.health.status import DEFAULT_THRESHOLDS
from keeper.units import UINT256_MAX, WAD


class AaveV3(AaveV3Adapter, MarketAdapter[AaveMarketState, AaveAccount]):
    name = "aave_v3"
    price_boxes = True  # price_bands: a box, every price inside all of them at once

    def __init__(self, *args, market_name: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.market_name = market_name or self.label
        self._dex: tuple[int, dl.DexInputs] | None = None  # (block, inputs) of the last prepare_protect

    async def contract_health(self, accounts: Sequence[Address], block: int) -> list[ContractView]:
        views = await self.pool_account_data(accounts, block)
        return [ContractView(a, v.health_factor_wad < WAD,
                             None if v.health_factor_wad == UINT256_MAX else v.health_factor_wad,
                             v.total_collateral_base, v.total_debt_base)
                for a, v in zip(accounts, views)]

    # a price search per position (~100 us, fast.py) would add ~1 s to a 10,000-position
    # scan or price move: on demand only (bench/idle.py's full-scan column measured it)
    price_triggers_ahead = False

    # interest crossings: the level is the block timestamp (keeper.protocols.aave_v3.interest)
    @staticmethod
    def accrued(old: AaveMarketState | None, new: AaveMarketState) -> int | None:
        return interest.accrued(old, new)

    @staticmethod
    def crossing(market: AaveMarketState, acct: AaveAccount, hf_wad: int) -> int | None:
        level = interest.crossing(market, acct, hf_wad)  # no later than its price band's end
        return level if level is None else min(level, market.timestamp + price_bands.WINDOW_S)

    @staticmethod
    def recovery(market: AaveMarketState, acct: AaveAccount, hf_wad: int) -> int | None:
        return interest.recovery(market, acct, hf_wad)

    @staticmethod
    def level(market: AaveMarketState) -> int:
        return interest.level(market)

    @staticmethod
    def liquidation_prices(market: AaveMarketState, acct: AaveAccount) -> list[tuple[str, int, bool]]:
        """The main collateral's price key and the highest price at which the account is
        liquidatable (health.liquidation_price, exact on fast.py's view); none for 3.6
        markets yet (no fast path) nor for the other keys an account's health reads."""
        return triggers.liquidation_prices(market, acct)

    @staticmethod
    def price_bands(market: AaveMarketState, horizon: AaveMarketState, acct: AaveAccount,
                    low: int | None, high: int | None) -> list[tuple[str, int, int]] | None:
        """Closed-form estimates verified by interval bounds (price_bands.py); no horizon:
        Aave has no accrual level."""
        return price_bands.price_bands(market, acct, low, high)

    @staticmethod
    def price_moved(old: AaveMarketState | None, new: AaveMarketState) -> tuple[dict[str, int], None] | None:
        return price_bands.price_moved(old, new)

    async def doctor(self, block: int) -> list[Check]:
        return await aave_checks(self.label, self.provider, self.rpc, self.mc, block)

    def symbols(self, market: AaveMarketState) -> set[str]:
        return {r.symbol.upper() for r in market.reserves}

    def prices_usd(self, market: AaveMarketState) -> dict[Address, tuple[str, int]]:
        if market.base_currency_unit != plan.USD:  # an ETH-based oracle prices nothing in USD
            return {}
        return {r.asset: (r.symbol, r.price_base) for r in market.reserves
                if r.asset not in market.unreliable_assets}

    def price_feeds(self, market: AaveMarketState) -> dict[Address, str]:
        return {r.price_source: r.symbol for r in market.reserves if int(r.price_source or "0x0", 16)}

    def tokens(self, market: AaveMarketState) -> dict[Address, str]:
        return {r.asset: r.symbol for r in market.reserves}

    def spend_tokens(self, market: AaveMarketState) -> list[Address]:
        return [r.asset for r in market.reserves]

    def approvals(self, market: AaveMarketState) -> list[tuple[Address, Address]]:
        return [(r.asset, market.pool) for r in market.reserves]  # plan.encode: Approval(.., pool, ..)

    def agrees(self, position: Position, view: ContractView) -> bool:
        hf = UINT256_MAX if position.health_factor_wad is None else position.health_factor_wad
        mine = (hf, position.collateral_base, position.debt_base)
        return mine == (UINT256_MAX if view.health_factor_wad is None else view.health_factor_wad,
                        view.collateral, view.debt)

    def plan_top_up(self, market: AaveMarketState, acct: AaveAccount, rule: ProtectRule,
                    wallet: Mapping[Address, int]) -> TopUp | None:
        """A wallet top-up first; a deleverage (from the position itself) when the wallet
        cannot pay for the whole target and the rule allows one."""
        hf = self.evaluator(market).position(acct, DEFAULT_THRESHOLDS, False).health_factor_wad
        if rule.boost_above_wad is not None and (hf or 0) > rule.boost_above_wad:  # re-leverage
            dex = self._dex[1] if self._dex is not None and self._dex[0] == market.block else None
            return boost.boost_top_up(self.label, market, acct, hf or 0, rule, rule.boost_above_wad, dex)
        if dl.closing(market, rule):  # stop-loss: close from the collateral, whatever the HF
            dex = self._dex[1] if self._dex is not None and self._dex[0] == market.block else None
            return dl.close_top_up(self.label, market, acct, hf or 0, rule, dex)
        d = plan.top_up(self.label, market, acct, hf or 0, rule, wallet)
        if (d is None or d.plan.partial) and dl.pairs(rule):
            dex = self._dex[1] if self._dex is not None and self._dex[0] == market.block else None
            return dl.deleverage_top_up(self.label, market, acct, hf or 0, rule, dex) or d
        return d

    async def prepare_protect(self, market: AaveMarketState, rules: Sequence[ProtectRule], lenders=()) -> None:
        listed = {r.symbol.upper(): r.asset for r in market.reserves}
        wanted = {(listed[c], listed[d]) for rule in rules if rule.contract for c, d in dl.pairs(rule)
                  if c in listed and d in listed}
        factory = next((r.dex_factory for r in rules if r.dex_factory), None)
        if wanted and factory is not None:
            self._dex = (market.block, await read_dex_inputs(self.rpc, market.pool, factory, wanted,
                                                             market.block))

    async def protect_delegation(self, market: AaveMarketState, rule: ProtectRule, contract: Address,
                                 keeper: Address):
        return await delegation(self.rpc, market, rule, contract, keeper, market.block)

    def protect_calls(self, contract: Address) -> list[tuple[Address, str]]:
        return [(contract, dl.DELEVERAGE_AAVE), (contract, boost.BOOST_AAVE)]

    def plan_liquidations(self, market: AaveMarketState, due: Sequence[Position],
                          accounts: Mapping[Address, AaveAccount], ctx: PlanContext) -> list[Liquidate]:
        return plan.liquidations(self.label, market, due, accounts, ctx)

    def after_liquidation(self, market: AaveMarketState, acct: AaveAccount,
                          decision: Liquidate) -> tuple[AaveMarketState, AaveAccount] | None:
        return after.after_liquidation(market, acct, decision)

    def encode(self, decision: Decision, sender: Address):
        if isinstance(decision, TopUp) and isinstance(decision.quote, dl.DeleverageQuote):
            q = decision.quote
            return [TxStep(q.contract, dl.deleverage_calldata(q, q.deadline), f"deleverage {decision.account}")]
        if isinstance(decision, TopUp) and isinstance(decision.quote, boost.BoostQuote):
            return [TxStep(decision.quote.contract, boost.boost_calldata(decision.quote), f"boost {decision.account}")]
        return plan.encode(self._pool(), decision)

    def realized(self, market: AaveMarketState, decision: Decision, receipts, prices: PriceBook) -> Outcome:
        if isinstance(decision, TopUp) and isinstance(decision.quote, dl.DeleverageQuote):
            return dl.realized(decision.quote, receipts)
        if isinstance(decision, TopUp) and isinstance(decision.quote, boost.BoostQuote):
            return boost.realized(decision.quote, receipts)
        return plan.realized(market, decision, receipts)

    def allowed_calls(self, market: AaveMarketState) -> list[tuple[Address, str]]:
        return enc.allowed_calls(market.pool, [r.asset for r in market.reserves])

    def flash_lenders(self, market: AaveMarketState) -> list[FlashLender]:
        """flashLoanSimple of every reserve (its aToken holds the underlying)."""
        return [FlashLender(FLASH_AAVE, market.pool, tuple((r.asset, r.a_token) for r in market.reserves))]

    def _pool(self) -> Address:
        if self.static is None:
            raise RuntimeError("the Aave V3 market has not been loaded yet")
        return self.static.pool


def build(mk, chain) -> list[tuple[str, AaveV3]]:
    return [(mk.name, AaveV3(chain.rpc, chain.multicall, chain.logs, mk.pool_addresses_provider, mk.name,
                             market_name=mk.name))]
