"""Compound V3 capital-free liquidation, pure: through KeeperLiquidator, ``absorb`` every
liquidatable account, flash the base token, ``buyCollateral`` of the absorbed asset whose
sale pays best at the store-front discount and sell it on Uniswap V3 (one asset per
transaction: what is left in Comet's reserves is for the next tick), compared with the
own-capital absorb + buy by USD e8 after gas (keeper.dex.view.capital_free_decision).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from keeper.dex import flash_plans
from keeper.dex.view import DexView, capital_free_decision
from keeper.model import Address, Liquidate, Position
from keeper.protocols.compound_v3 import math as cm


def base_for(m: cm.CometMarket, asset: Address, collateral: int) -> int:
    """The largest base amount whose quoteCollateral does not exceed ``collateral`` (what the
    protocol holds: buying more reverts with InsufficientReserves), by bisection."""
    lo, hi = 0, 1
    while cm.quote_collateral(m, asset, hi) < collateral:
        hi *= 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cm.quote_collateral(m, asset, mid) >= collateral:
            hi = mid
        else:
            lo = mid
    return hi if cm.quote_collateral(m, asset, hi) <= collateral else hi - 1


def choose(key: str, comet: Address, m: cm.CometMarket, after: cm.CometMarket, absorbed: Sequence[Position],
           seized: Mapping[Address, int], own: Liquidate | None, ctx) -> Liquidate | None:
    dex: DexView | None = ctx.dex
    if dex is None or not comet:
        return own
    base, accounts = after.base_token, tuple(p.account for p in absorbed)
    best = None
    for asset, amount in sorted(seized.items()):
        base_amount = base_for(after, asset, amount) if amount else 0
        out = cm.quote_collateral(after, asset, base_amount) if base_amount else 0
        if out == 0:
            continue
        liq = flash_plans.comet(comet, accounts, asset, base, base_amount, out, dex.routes(asset, base),
                                dex.pools, dex.sources_for(base), dex.deadline, slack_bps=dex.slack_bps)
        if liq is not None and (best is None or liq.expected_profit > best.expected_profit):
            best = liq
    symbols = {m.base_token.lower(): m.base_symbol, **{a.asset.lower(): a.symbol for a in m.assets}}
    return capital_free_decision(own, best, dex, key=key, protocol="compound_v3", accounts=accounts,
                                 block=m.block, hf=min(p.health_factor_wad or 0 for p in absorbed),
                                 price_usd_e8=after.price(base), decimals=len(str(after.base_scale)) - 1,
                                 gas_usd_e8=ctx.gas_usd_e8, min_profit_usd_e8=ctx.min_profit_usd_e8,
                                 symbols=symbols)
