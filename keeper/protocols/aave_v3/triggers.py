"""Aave V3 price triggers computed ahead (keeper.triggers), pure: for each position, the
price of its main collateral's price key (the asset, or its e-mode category's price source)
at or below which it is liquidatable, the other prices held (``health.liquidation_price``
on fast.py's per-market view, memoized by market identity, so a tick prepares it once).

Not here yet: 3.6 markets (math36 has no fast path; none named), and the other keys an
account's health reads (a second collateral, a debt's price rising). Kept only on demand
(``price_triggers_ahead`` is False): a block's price moves are judged by the status bands
(price_bands.py), and time by the interest crossings, whose level is the block timestamp
(interest.py).
"""

from __future__ import annotations

from keeper.protocols.aave_v3.fast import view_for
from keeper.protocols.aave_v3.health import _liquidatable, _scale_prices, liquidation_price
from keeper.protocols.aave_v3.math36 import is_v36
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState


def liquidation_prices(market: AaveMarketState, acct: AaveAccount) -> list[tuple[str, int, bool]]:
    """[(main collateral's price key, highest liquidating price, True)], or [] (no debt,
    no collateral, no price liquidates, a 3.6 market)."""
    if is_v36(market):
        return []
    lp = liquidation_price(market, acct, view_for(market))
    if lp is None:
        return []
    key, price = lp.key.lower(), lp.price
    if price == lp.current_price and price > 0:  # liquidatable now: how far up it stays so
        price = _highest_liquidatable(market, acct, key, price)
    return [(key, price, True)]


def _highest_liquidatable(market: AaveMarketState, acct: AaveAccount, key: str, p0: int) -> int:
    """The highest price of ``key`` (all its prices scaled together, as ``shock``) that still
    liquidates an account liquidatable at ``p0``: doubling, then bisection, on the exact math
    (only liquidatable accounts get here: few)."""

    def liquidates(p: int) -> bool:
        try:
            return _liquidatable(_scale_prices(market, key, p, p0), acct)
        except (OverflowError, ValueError):  # past what Aave computes: not liquidatable
            return False

    lo, hi = p0, 2 * p0
    while liquidates(hi):
        if hi >= 1 << 128:
            return hi
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if liquidates(mid) else (lo, mid)
    return lo
