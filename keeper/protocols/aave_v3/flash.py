"""Aave V3 capital-free liquidation, pure: the same liquidationCall keeper's exact math plans,
paid by a flash loan and the seized collateral sold on Uniswap V3 (keeper.dex.flash_plans),
compared with the own-capital one by USD e8 after gas (keeper.dex.view.capital_free_decision).

Planned at the tick's market state with no wallet limit (the flash loan pays), with
``debtToCover`` = exactly what it repays (``aave_exact_cover``). On a 3.3+ market (3.6
rules) only own capital is planned for now: ``aave_exact_cover`` follows the 3.0.2 math.
"""

from __future__ import annotations

from keeper.dex import flash_plans
from keeper.dex.view import DexView, capital_free_decision
from keeper.model import Liquidate, Position
from keeper.protocols.aave_v3.liquidation import best_liquidation
from keeper.protocols.aave_v3.math36 import is_v36
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState

USD = 10**8


def choose(key: str, market: AaveMarketState, pos: Position, acct: AaveAccount, own: Liquidate | None,
           ctx) -> Liquidate | None:
    """``own`` (None: the wallet cannot pay any) or the capital-free liquidation of ``acct``."""
    dex: DexView | None = ctx.dex
    if dex is None or is_v36(market):
        return own
    q = best_liquidation(market, acct, 0, 0)
    liq = None
    if q is not None:
        q = flash_plans.aave_exact_cover(market, acct, q)
        liq = flash_plans.aave(market.pool, acct.account, q.collateral_asset, q.debt_asset, q.debt_to_repay,
                               q.collateral_to_receive, dex.routes(q.collateral_asset, q.debt_asset),
                               dex.pools, dex.sources_for(q.debt_asset), dex.deadline,
                               slack_bps=dex.slack_bps)
    debt = market.by_asset(q.debt_asset) if q is not None else None
    price = 0 if debt is None else (debt.price_base if market.base_currency_unit == USD
                                    else debt.price_base * USD // market.base_currency_unit)
    return capital_free_decision(own, liq, dex, key=key, protocol="aave_v3", accounts=(pos.account,),
                                 block=market.block, hf=pos.health_factor_wad or 0, price_usd_e8=price,
                                 decimals=debt.config.decimals if debt is not None else 0,
                                 gas_usd_e8=ctx.gas_usd_e8, min_profit_usd_e8=ctx.min_profit_usd_e8,
                                 symbols={r.asset.lower(): r.symbol for r in market.reserves})
