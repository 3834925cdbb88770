"""Morpho Blue triggers computed ahead (keeper.triggers), pure: the accrual level of a market
and, per position, the level and the oracle price at which its status changes.

Between two blocks with no event on a market and no oracle move, only interest moves it:
``totalBorrowAssets`` grows while ``totalBorrowShares``, the price and the parameters stay.
A position's debt is ``borrowShares.toAssetsUp(totalBorrowAssets, totalBorrowShares)``
(SharesMathLib), so the level is ``totalBorrowAssets`` and every crossing is exact:

    hf < T  <=>  maxBorrow * WAD < T * borrowed        (hf = maxBorrow * WAD // borrowed)
            <=>  borrowed >= maxBorrow * WAD // T + 1 =: B
    ceil(s * (tba + V_A) / (tbs + V_S)) >= B  <=>  tba >= (B - 1) * (tbs + V_S) // s + 1 - V_A
"""

from __future__ import annotations

from dataclasses import replace

from keeper.protocols.morpho_blue.math import (
    ORACLE_PRICE_SCALE, VIRTUAL_ASSETS, VIRTUAL_SHARES, WAD, MorphoMarket, MorphoPosition, borrowed_assets,
    collateral_value, liquidation_price, w_mul_down,
)
from keeper.units import UINT256_MAX


def _fixed(m: MorphoMarket) -> MorphoMarket:
    """What interest alone leaves as it is (the accrued fields zeroed)."""
    return replace(m, block=0, timestamp=0, last_update=0, total_borrow_assets=0,
                   total_supply_assets=0, total_supply_shares=0)


def accrued(old: MorphoMarket | None, new: MorphoMarket) -> int | None:
    """``new.total_borrow_assets`` when only interest moved the market since ``old``."""
    if old is None or new.total_borrow_assets < old.total_borrow_assets or _fixed(old) != _fixed(new):
        return None
    return new.total_borrow_assets


def projected(m: MorphoMarket, bps: int) -> tuple[MorphoMarket, int]:
    """``m`` with totalBorrowAssets raised by ``bps`` (rounded up), as interest would."""
    level = -(-m.total_borrow_assets * (10_000 + bps) // 10_000)
    return at_level(m, level), level


def at_level(m: MorphoMarket, level: int) -> MorphoMarket:
    """``m`` with totalBorrowAssets at ``level`` (at least where it is)."""
    return m if level <= m.total_borrow_assets else replace(m, total_borrow_assets=level)


def crossing(m: MorphoMarket, pos: MorphoPosition, hf_wad: int) -> int | None:
    """The lowest totalBorrowAssets at which ``pos``'s health factor is below ``hf_wad``
    (exact; the module doc). None without debt."""
    s = pos.borrow_shares
    if s == 0:
        return None
    max_borrow = w_mul_down(collateral_value(m, pos), m.params.lltv)
    b = max_borrow * WAD // hf_wad + 1
    return max(0, (b - 1) * (m.total_borrow_shares + VIRTUAL_SHARES) // s + 1 - VIRTUAL_ASSETS)


def liquidation_prices(m: MorphoMarket, pos: MorphoPosition) -> list[tuple[str, int, bool]]:
    """[(oracle, highest liquidating price, falls)]: Morpho's one price, the oracle's."""
    p = liquidation_price(m, pos)
    return [] if p is None or p < 0 else [(m.params.oracle.lower(), p, True)]


def price_below(m: MorphoMarket, pos: MorphoPosition, hf_wad: int) -> int | None:
    """The highest oracle price at which ``pos``'s health factor is below ``hf_wad`` (exact:
    hf = floor(floor(floor(c * p / S) * lltv / WAD) * WAD / b), so hf < T <=> maxBorrow < M :=
    ceil(T * b / WAD) <=> floor(c * p / S) < q := ceil(M * WAD / lltv) <=> p < ceil(q * S / c)).
    None without debt; UINT256_MAX when every price is (no collateral, or lltv 0)."""
    if pos.borrow_shares == 0:
        return None
    b = borrowed_assets(m, pos)
    if b == 0:
        return None
    if pos.collateral == 0 or m.params.lltv == 0:
        return UINT256_MAX
    big_m = -(-hf_wad * b // WAD)
    q = -(-big_m * WAD // m.params.lltv)
    return -(-q * ORACLE_PRICE_SCALE // pos.collateral) - 1


def price_bands(m: MorphoMarket, horizon: MorphoMarket, pos: MorphoPosition, low: int | None,
                high: int | None) -> list[tuple[str, int | None, int | None]]:
    """keeper.bands: the oracle prices at which ``pos`` keeps a health factor in [low, high)
    at every accrual level from ``m``'s to ``horizon``'s: more debt only raises the price
    below which it worsens (taken at the horizon) and the one above which it improves
    (taken now). [] without debt."""
    if pos.borrow_shares == 0:
        return []
    lo = None if low is None else price_below(horizon, pos, low)
    hi = None if high is None else price_below(m, pos, high)
    return [(m.params.oracle.lower(), None if lo is None else lo + 1, hi)]


def price_moved(old: MorphoMarket | None, new: MorphoMarket) -> tuple[dict[str, int], int] | None:
    """({oracle: new price}, accrual level) when only the oracle price and interest moved."""
    if old is None or old.price == new.price or accrued(replace(old, price=new.price), new) is None:
        return None
    return {new.params.oracle.lower(): new.price}, new.total_borrow_assets
