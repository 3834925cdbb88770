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
    VIRTUAL_ASSETS, VIRTUAL_SHARES, WAD, MorphoMarket, MorphoPosition, collateral_value,
    liquidation_price, w_mul_down,
)


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
    return replace(m, total_borrow_assets=level), level


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
