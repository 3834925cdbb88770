"""Compound III (Comet) triggers computed ahead (keeper.triggers), pure: the accrual level of
a market and, per account, the level and the prices at which its status changes.

Between two blocks in which no price, asset configuration or reliability moved, only
interest moves a borrower: its debt is ``presentValueBorrow(baseBorrowIndex, -principal)``
priced by the base price, all else fixed. So the level is ``baseBorrowIndex`` and every
crossing is exact (values as ``math._totals`` rounds them: L the liquidation-weighted
collateral value, P = -principal, p_b the base price, s_b the base scale):

    hf < T  <=>  L * WAD < T * debt                 (hf = L * WAD // debt)
            <=>  debt >= L * WAD // T + 1 =: D
    floor(floor(P * index / 1e15) * p_b / s_b) >= D  <=>  index >= ceil(ceil(D * s_b / p_b) * 1e15 / P)

Prices, one at a time (the others as they are): a collateral's term
``mulFactor(mulPrice(balance, p, scale), liquidateCollateralFactor)`` rises with p, so the
account is liquidatable exactly for p <= a bound; the base price scales the debt, so
exactly for p >= a bound (both solved in closed form below, integer by integer).
"""

from __future__ import annotations

from dataclasses import replace

from keeper.protocols.compound_v3.math import (
    BASE_INDEX_SCALE, FACTOR_SCALE, CometAccount, CometAssetInfo, CometMarket, _balance, assets_in,
    mul_factor, mul_price, present_value_of,
)
from keeper.units import WAD


def _fixed(m: CometMarket) -> CometMarket:
    """What interest alone leaves as it is, plus what no borrower's health reads."""
    return replace(m, block=0, timestamp=0, base_supply_index=0, base_borrow_index=0, last_accrual_time=0,
                   reserves=0, total_supply_base=0, total_borrow_base=0, collateral_reserves={})


def accrued(old: CometMarket | None, new: CometMarket) -> int | None:
    """``new.base_borrow_index`` when only interest moved the market since ``old``."""
    if old is None or new.base_borrow_index < old.base_borrow_index or _fixed(old) != _fixed(new):
        return None
    return new.base_borrow_index


def projected(m: CometMarket, bps: int) -> tuple[CometMarket, int]:
    """``m`` with baseBorrowIndex raised by ``bps`` (rounded up), as interest would."""
    level = -(-m.base_borrow_index * (10_000 + bps) // 10_000)
    return at_level(m, level), level


def at_level(m: CometMarket, level: int) -> CometMarket:
    """``m`` with baseBorrowIndex at ``level`` (at least where it is)."""
    return m if level <= m.base_borrow_index else replace(m, base_borrow_index=level)


_LAST: list = [None, None, None, None]  # (account object, market.assets, prices) -> terms: one entry


def _terms(m: CometMarket, acct: CometAccount) -> tuple[int, list[tuple[CometAssetInfo, int, int]]]:
    """(liquidation-weighted collateral value, [(asset info, balance, its term)]) as
    ``math._totals`` sums it (prices <= 0 count as 0); the index is not read, so the
    crossing and the prices at the horizon share one walk (kept for the last account)."""
    last = _LAST
    if last[0] is acct and last[1] is m.assets and last[2] is m.prices_e8:
        return last[3]
    bits = assets_in(m, acct)
    liq, terms = 0, []
    for info in m.assets:
        if bits >> info.offset & 1:
            bal = _balance(acct, info.asset)
            term = mul_factor(mul_price(bal, max(m.price(info.asset), 0), info.scale),
                              info.liquidate_collateral_factor)
            liq += term
            terms.append((info, bal, term))
    out = (liq, terms)
    _LAST[:] = [acct, m.assets, m.prices_e8, out]
    return out


def crossing(m: CometMarket, acct: CometAccount, hf_wad: int) -> int | None:
    """The lowest baseBorrowIndex at which ``acct``'s health factor is below ``hf_wad``
    (exact; the module doc). None without a borrow or with a base price <= 0 (no debt value:
    interest alone never makes it liquidatable)."""
    if acct.principal >= 0:
        return None
    base_price = m.price(m.base_token)
    if base_price <= 0:
        return None
    d = _terms(m, acct)[0] * WAD // hf_wad + 1
    x = -(-d * m.base_scale // base_price)
    return -(-x * BASE_INDEX_SCALE // -acct.principal)


def liquidation_prices(m: CometMarket, acct: CometAccount) -> list[tuple[str, int, bool]]:
    """[(asset, price, falls)]: each collateral's highest liquidating price and the base
    price's lowest, the other prices as in ``m`` (prices <= 0 count as 0, as position_from)."""
    if acct.principal >= 0:
        return []
    liq, terms = _terms(m, acct)
    pv = present_value_of(m.base_borrow_index, -acct.principal)
    debt = pv * max(m.price(m.base_token), 0) // m.base_scale  # -signedMulPrice(-pv): pv >= 0
    out: list[tuple[str, int, bool]] = []
    for info, bal, term in terms:
        if bal == 0 or info.liquidate_collateral_factor == 0:
            continue
        r = debt - (liq - term)  # liquidatable <=> term(p) < r
        if r <= 0:
            continue
        v = -(-r * FACTOR_SCALE // info.liquidate_collateral_factor) - 1  # term(p) < r <=> mulPrice <= v
        out.append((info.asset.lower(), -(-(v + 1) * info.scale // bal) - 1, True))
    if pv > 0:  # debt(p) = floor(pv * p / s_b) > liq
        out.append((m.base_token.lower(), -(-(liq + 1) * m.base_scale // pv), False))
    return out


def price_bands(m: CometMarket, horizon: CometMarket, acct: CometAccount, low: int | None,
                high: int | None) -> list[tuple[str, int | None, int | None]] | None:
    """keeper.bands: per price ``acct``'s health reads (each collateral's, the base's), a
    range such that its health factor stays in [low, high) for every combination of prices in
    all of them at once (a box) and every accrual level from ``m``'s to ``horizon``'s.

    Health rises with each collateral's price and falls with the base price and the index, so
    the box holds exactly when its worst corner (collaterals at lo, base at hi, the horizon's
    debt) is at or above ``low`` and its best (collaterals at hi, base at lo, today's debt)
    below ``high``. Each key gets 1/n of its exact one-price room (solved as
    ``liquidation_prices``, for any threshold T), halved until the corners hold. None where
    a price is not positive (the position is unreliable; such a move is not a price move)."""
    if acct.principal >= 0:
        return []
    l0, terms = _terms(m, acct)
    keyed = [(info, bal) for info, bal, _ in terms if bal and info.liquidate_collateral_factor]
    own = [term for info, bal, term in terms if bal and info.liquidate_collateral_factor]
    base = m.price(m.base_token)
    p0 = [m.price(info.asset) for info, _ in keyed]
    if base <= 0 or any(p <= 0 for p in p0):
        return None
    pv_now = present_value_of(m.base_borrow_index, -acct.principal)
    pv_h = present_value_of(horizon.base_borrow_index, -acct.principal)

    def liq(prices) -> int:
        return sum(mul_factor(mul_price(bal, p, info.scale), info.liquidate_collateral_factor)
                   for (info, bal), p in zip(keyed, prices))

    def holds(lo: list, hi: list) -> bool:  # lo / hi: collaterals' prices, then the base's
        if low is not None:
            debt = pv_h * hi[-1] // m.base_scale
            if debt and liq(lo[:-1]) * WAD // debt < low:
                return False
        if high is not None:
            debt = pv_now * lo[-1] // m.base_scale
            if not debt or liq(hi[:-1]) * WAD // debt >= high:
                return False
        return True

    # one-price rooms (the others as they are): a collateral's below which hf < low at the
    # horizon, above which hf >= high today; the base's reverse
    down, up = [], []
    for i, ((info, bal), p) in enumerate(zip(keyed, p0)):
        rest = l0 - own[i]
        for t, pv, out, side in ((low, pv_h, down, -1), (high, pv_now, up, 1)):
            if t is None:
                out.append(None)
                continue
            r = -(-t * (pv * base // m.base_scale) // WAD) - rest  # hf < t <=> term(p) < r
            edge = (-(-(-(-r * FACTOR_SCALE // info.liquidate_collateral_factor)) * info.scale // bal) - 1
                    if r > 0 else -1)  # the highest price with hf < t
            out.append(max(0, p - edge - 1) if side < 0 else max(0, edge - p))
    for t, pv, out, side in ((high, pv_now, down, -1), (low, pv_h, up, 1)):
        if t is None or pv == 0:
            out.append(None)
            continue
        q = -(-(l0 * WAD // t + 1) * m.base_scale // pv)  # the lowest base price with hf < t
        out.append(max(0, base - q) if side < 0 else max(0, q - 1 - base))
    n = len(p0) + 1
    down = [None if d is None else d // n for d in down]
    up = [None if u is None else u // n for u in up]
    prices = [*p0, base]
    for _ in range(9):
        lo = [p - (d or 0) for p, d in zip(prices, down)]  # None: no edge, corner not checked
        hi = [p + (u or 0) for p, u in zip(prices, up)]
        if holds(lo, hi):
            keys = [info.asset.lower() for info, _ in keyed] + [m.base_token.lower()]
            return [(k, None if d is None else a, None if u is None else b)
                    for k, a, b, d, u in zip(keys, lo, hi, down, up)]
        down = [None if d is None else d // 2 for d in down]
        up = [None if u is None else u // 2 for u in up]
    return None


def price_moved(old: CometMarket | None, new: CometMarket) -> tuple[dict[str, int], int] | None:
    """({asset: new price}, accrual level) when only prices (each > 0) and interest moved."""
    if old is None or old.prices_e8 == new.prices_e8:
        return None
    moves = {a.lower(): p for a, p in new.prices_e8.items() if old.prices_e8.get(a) != p}
    if (old.prices_e8.keys() != new.prices_e8.keys() or min(moves.values()) <= 0
            or accrued(replace(old, prices_e8=new.prices_e8), new) is None):
        return None
    return moves, new.base_borrow_index
