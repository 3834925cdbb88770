"""Morpho Blue capital-free liquidation, pure: ``liquidate`` through KeeperLiquidator, whose
``onMorphoLiquidate`` callback sells the seized collateral on Uniswap V3 before Morpho pulls
the repaid loan token (no flash loan, no fee), compared with the own-capital liquidation by
USD e8 after gas (keeper.dex.view.capital_free_decision).

Every borrow share when the collateral covers what that seizes, else the largest seizure
that does not revert (``max_liquidation``), as keeper's exact math computes them.
"""

from __future__ import annotations

from keeper.dex import flash_plans
from keeper.dex.view import DexView, capital_free_decision
from keeper.model import Liquidate, Position
from keeper.protocols.morpho_blue import math as mm


def choose(key: str, morpho: str, m: mm.MorphoMarket, p: Position, pos: mm.MorphoPosition,
           own: Liquidate | None, ctx, loan_decimals: int, symbols: dict[str, str]) -> Liquidate | None:
    dex: DexView | None = ctx.dex
    if dex is None:
        return own
    loan = m.params.loan_token
    price = ctx.prices.value_usd(loan, 10**loan_decimals, loan_decimals)
    liq = None
    if price and pos.borrow_shares:
        try:
            try:
                q, by_shares = mm.liquidate_quote(m, pos, repaid_shares=pos.borrow_shares), True
            except mm.LiquidationRevert:
                q, by_shares = mm.max_liquidation(m, pos), False
        except mm.LiquidationRevert:
            return own
        liq = flash_plans.morpho(morpho, m.params.as_tuple(), pos.account, q.seized_assets, q.repaid_shares,
                                 by_shares, q.repaid_assets, dex.routes(m.params.collateral_token, loan),
                                 dex.pools, dex.deadline, slack_bps=dex.slack_bps)
    return capital_free_decision(own, liq, dex, key=key, protocol="morpho_blue", accounts=(p.account,),
                                 block=m.block, hf=p.health_factor_wad or 0, price_usd_e8=price or 0,
                                 decimals=loan_decimals, gas_usd_e8=ctx.gas_usd_e8,
                                 min_profit_usd_e8=ctx.min_profit_usd_e8,
                                 symbols={a.lower(): s for a, s in symbols.items()})
