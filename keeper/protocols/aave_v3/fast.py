"""The Aave V3 account math of ``aave_v3``, exact to the wei, with the per-market work done once.

``prepare(market)`` computes, once per market state, what GenericLogic reads per
reserve (normalized income and debt at ``market.timestamp`` by the exact
``aave_math`` functions, price, asset unit, LT, LTV, e-mode category) and per
e-mode category (ltv, lt, price). ``fast_totals(view, acct)`` then walks one
account with plain int arithmetic, no ``checked()``, no dicts.

Why dropping the overflow checks is exact. On the fast path every balance an
account's math reads is in [0, 2**128) (Aave stores scaled balances as uint128),
every normalized index and price in [0, 2**96), LT and LTV in [0, 2**16), the
asset unit >= 1, and at most 256 reserve ids are counted. Then:
  rayMul(balance, index): balance * index + HALF_RAY < 2**224 + 2**89, result < 2**135;
  collateral value: amount * price < 2**231, value * lt < 2**247;
  debt: rayMul + stable < 2**136, times price < 2**232;
  sums of <= 256 terms: collateral < 2**239, value*lt and value*ltv < 2**255, debt < 2**240;
  percentMul: total * avgLT + HALF_BPS < 2**255 (avgLT is a weighted mean of LTs < 2**16).
So every ``checked()`` and every rayMul/percentMul guard of the exact path holds;
only wadDiv's guard (pm * WAD + debt / 2 <= MAX) is tested, once, at the end.
Anything outside those bounds (or inconsistent: missing reserve, category or
balances, a duplicate balance row, a reserve whose index computation reverts)
goes to the exact path, ``aave_v3._walk``, which returns or raises as before.
The what-ifs below only lower prices (num <= den) or replace an e-mode price by
an asset's own price, so the same bounds hold for every price they try.

A MarketView belongs to one market state: build it from the state you evaluate
(``view_for`` memoizes the last few by identity; market states are frozen).
"""

from __future__ import annotations

from collections.abc import Callable

from keeper.protocols.aave_v3.math import get_normalized_debt, get_normalized_income
from keeper.health.status import HEALTH_FACTOR_LIQUIDATION_THRESHOLD
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState, AccountData
from keeper.units import BPS, HALF_BPS, HALF_RAY, RAY, UINT256_MAX, WAD

MAX_FAST_IDS = 256  # reserve ids the view covers (Aave: MAX_RESERVES_COUNT = 128)
BALANCE_BITS = 128  # balances read on the fast path are < 2**128
INDEX_PRICE_BITS = 96  # normalized indices and prices on the fast path are < 2**96

Totals = tuple[int, int, int, int, int, "int | None"]
_EMPTY: Totals = (0, 0, 0, 0, UINT256_MAX, None)


class MarketView:
    """Per-reserve-id tuples (index == reserve id) of what the account math reads.

    ``reserves[i]``: (income_ray, debt_ray, price, asset_unit, lt, ltv, emode_category),
    or None when the reserve is absent or outside the fast-path bounds.
    ``assets[i]``: (asset, asset.lower(), symbol) or None when absent.
    ``emode[c]``: (ltv, lt, price) (price 0 when the category has no price source),
    None when outside the bounds. ``sources[c]``: (price_source, lowercased or None
    for the zero address). ``meta``: per (user_config, emode) memo for position_from.
    """

    __slots__ = ("market", "reserves", "assets", "emode", "sources", "meta")

    def __init__(self, market: AaveMarketState, reserves: tuple, assets: tuple, emode: dict, sources: dict) -> None:
        self.market, self.reserves, self.assets = market, reserves, assets
        self.emode, self.sources = emode, sources
        self.meta: dict[tuple[int, int], tuple[frozenset[str], bool]] = {}


def _small(*values: int, bits: int) -> bool:
    return all(type(v) is int and 0 <= v < (1 << bits) for v in values)


def prepare(market: AaveMarketState) -> MarketView:
    """Precompute ``market`` once for ``fast_totals`` and the fast what-ifs."""
    from keeper.protocols.aave_v3.account import _is_zero_address, _reserve

    ids = [r.id for r in market.reserves if type(r.id) is int and 0 <= r.id < MAX_FAST_IDS]
    n = max(ids) + 1 if ids else 0
    reserves: list[tuple[int, int, int, int, int, int, int] | None] = []
    assets: list[tuple[str, str, str] | None] = []
    for i in range(n):
        r = _reserve(market, i)  # reservesList[i], with aave_v3's lookup rules
        assets.append(None if r is None else (r.asset, r.asset.lower(), r.symbol))
        entry = None
        if r is not None:
            c = r.config
            try:
                income = get_normalized_income(r, market.timestamp)
                debt = get_normalized_debt(r, market.timestamp)
                unit = pow(10, c.decimals, 2**256)  # unchecked 10 ** decimals
            except (ArithmeticError, ValueError, TypeError):
                income = debt = unit = -1  # reverts: leave it to the exact path
            if (_small(income, debt, r.price_base, bits=INDEX_PRICE_BITS) and unit > 0
                    and _small(c.liquidation_threshold_bps, c.ltv_bps, bits=16)
                    and type(c.decimals) is int and 0 <= c.decimals < 256):  # fmt: skip
                entry = (income, debt, r.price_base, unit, c.liquidation_threshold_bps, c.ltv_bps,
                         c.emode_category)  # fmt: skip
        reserves.append(entry)
    emode: dict[int, tuple[int, int, int] | None] = {}
    sources: dict[int, tuple[str, str | None]] = {}
    for cid, cat in market.emode_categories.items():
        try:
            zero = _is_zero_address(cat.price_source)
        except (ValueError, TypeError, AttributeError):
            emode[cid] = None
            continue
        price = 0 if zero else cat.price_base  # EModeLogic.getEModeConfiguration
        ok = _small(cat.ltv_bps, cat.liquidation_threshold_bps, bits=16) and _small(price, bits=INDEX_PRICE_BITS)
        emode[cid] = (cat.ltv_bps, cat.liquidation_threshold_bps, price) if ok else None
        sources[cid] = (cat.price_source, None if zero else cat.price_source.lower())
    return MarketView(market, tuple(reserves), tuple(assets), emode, sources)


_VIEWS: dict[int, tuple[AaveMarketState, MarketView]] = {}
_VIEWS_KEPT = 8


def view_for(market: AaveMarketState, view: MarketView | None = None) -> MarketView:
    """``view`` when it was prepared from this very market object, else a memoized ``prepare``."""
    if view is not None and view.market is market:
        return view
    hit = _VIEWS.get(id(market))
    if hit is not None and hit[0] is market:
        return hit[1]
    view = prepare(market)
    while len(_VIEWS) >= _VIEWS_KEPT:
        del _VIEWS[next(iter(_VIEWS))]
    _VIEWS[id(market)] = (market, view)  # the strong reference keeps id() from being reused
    return view


# -------------------------------------------------------------------- totals


def try_fast_totals(view: MarketView, acct: AaveAccount) -> Totals | None:
    """``fast_totals`` when the inputs are inside the fast path's bounds, else None: then the
    exact path (``fast_totals`` falls back to it) decides, and the what-ifs use the references."""
    # Aave V3 GenericLogic.calculateUserAccountData on the view
    cfg = acct.user_config
    if not cfg:
        return _EMPTY
    e = acct.emode
    e_ltv = e_lt = e_price = 0
    if e:
        ec = view.emode.get(e)
        if ec is None:
            return None
        e_ltv, e_lt, e_price = ec
    res = view.reserves
    n = len(res)
    tc = td = sltv = slt = seen = big = 0
    main, main_v = -1, -1
    for ur in acct.reserves:
        i = ur.reserve_id
        if not 0 <= i < n:
            continue  # its bits, if set, are caught by the cfg & ~seen test below
        sh = i + i
        bits = (cfg >> sh) & 3
        if not bits:
            continue
        m = 3 << sh
        if seen & m:
            return None  # two balance rows for one reserve
        seen |= m
        r = res[i]
        if r is None:
            return None
        income, nd, price, unit, lt, ltv, cat = r
        if e and cat == e:  # EModeLogic.isInEModeCategory
            if e_price:
                price = e_price
            lt_, ltv_ = e_lt, e_ltv
        else:
            lt_, ltv_ = lt, ltv
        if bits & 2 and lt:
            a = ur.scaled_a_token
            big |= a
            v = (a * income + HALF_RAY) // RAY * price // unit
            tc += v
            if ltv:
                sltv += v * ltv_
            slt += v * lt_
            if v > main_v or (v == main_v and i < main):
                main, main_v = i, v
        if bits & 1:
            d = ur.scaled_variable_debt
            s = ur.stable_debt
            big |= d | s
            if d:
                d = (d * nd + HALF_RAY) // RAY
            td += price * (d + s) // unit
    if cfg & ~seen or big >> BALANCE_BITS:  # a bit without balances / out of bounds or < 0
        return None
    if tc:
        altv, alt = sltv // tc, slt // tc
    else:
        altv = alt = 0
    if td:
        x = (tc * alt + HALF_BPS) // BPS * WAD + td // 2
        if x > UINT256_MAX:
            return None  # wadDiv would revert: let the exact path raise
        hf = x // td
    else:
        hf = UINT256_MAX
    return tc, td, altv, alt, hf, (main if main >= 0 else None)


def _exact(view: MarketView, acct: AaveAccount) -> Totals:
    from keeper.protocols.aave_v3.account import _walk

    t, values = _walk(view.market, acct)
    main = max(values, key=lambda i: (values[i], -i)) if values else None
    return (t.total_collateral_base, t.total_debt_base, t.avg_ltv_bps,
            t.avg_liquidation_threshold_bps, t.health_factor_wad, main)  # fmt: skip


def fast_totals(view: MarketView, acct: AaveAccount) -> Totals:
    """(total_collateral_base, total_debt_base, avg_ltv_bps, avg_lt_bps, hf_wad, main_collateral_id).

    Equal to ``calculate_user_account_data`` and ``main_collateral(...).id`` (None
    when there is no counted collateral); raises what they raise."""
    return try_fast_totals(view, acct) or _exact(view, acct)


def fast_account_data(view: MarketView, acct: AaveAccount) -> AccountData:
    """``aave_v3.account_data`` (Pool.getUserAccountData) on a prepared view."""
    tc, td, altv, alt, hf, _ = fast_totals(view, acct)
    available = (tc * altv + HALF_BPS) // BPS  # percentMul, bounded as above
    return AccountData(tc, td, 0 if available < td else available - td, alt, altv, hf)


# ------------------------------------------------------- one-price what-ifs


class _OnePrice:
    """The account's math as a function of one oracle key's prices, all scaled by num / den
    (floored, as ``aave_v3._scale_prices``): the terms that do not read the key are summed once.

    A term is (is_collateral, amount, asset_unit, lt, price, fallback, fallback_keyed):
    its price is ``price * num // den``; when ``fallback`` is not None the price is an
    e-mode category's, and if it scales down to 0 Aave uses the asset's own price,
    ``fallback`` (scaled too when ``fallback_keyed``). The slopes (value per unit of
    num / den, << 64) feed the estimates only."""

    __slots__ = ("terms", "tc", "slt", "td", "coll_slope", "lt_slope", "debt_slope")

    def __init__(self, view: MarketView, acct: AaveAccount, key: str) -> None:
        cfg, e = acct.user_config, acct.emode
        e_lt, e_price = (view.emode[e][1], view.emode[e][2]) if e else (0, 0)
        e_keyed = bool(e) and view.sources[e][1] == key
        terms = []
        tc = slt = td = cs = ls = ds = 0
        for ur in acct.reserves:  # already validated by try_fast_totals
            i = ur.reserve_id
            if not 0 <= i < len(view.reserves) or not (bits := (cfg >> (i + i)) & 3):
                continue
            income, nd, price, unit, own_lt, _, cat = view.reserves[i]
            lt = own_lt
            keyed = view.assets[i][1] == key
            fb, fb_keyed = None, False
            if e and cat == e:
                lt = e_lt
                if e_price:  # the category's price overrides the asset's
                    if e_keyed:
                        fb, fb_keyed = price, keyed
                    price, keyed = e_price, e_keyed
            if bits & 2 and own_lt:
                amount = (ur.scaled_a_token * income + HALF_RAY) // RAY
                if keyed:
                    terms.append((True, amount, unit, lt, price, fb, fb_keyed))
                    cs += (amount * price << 64) // unit
                    ls += (amount * price * lt << 64) // unit
                else:
                    v = amount * price // unit
                    tc, slt = tc + v, slt + v * lt
            if bits & 1:
                d = ur.scaled_variable_debt
                amount = ((d * nd + HALF_RAY) // RAY if d else 0) + ur.stable_debt
                if keyed:
                    terms.append((False, amount, unit, 0, price, fb, fb_keyed))
                    ds += (amount * price << 64) // unit
                else:
                    td += price * amount // unit
        self.terms, self.tc, self.slt, self.td = tuple(terms), tc, slt, td
        self.coll_slope, self.lt_slope, self.debt_slope = cs, ls, ds

    def state(self, num: int, den: int) -> tuple[bool, int]:
        """(HF < 1e18, avg LT) with the key's prices at * num // den (num <= den).

        Raises OverflowError where wadDiv reverts."""
        tc, slt, td = self.tc, self.slt, self.td
        for coll, amount, unit, lt, price, fallback, fallback_keyed in self.terms:
            p = price * num // den
            if fallback is not None and p == 0:  # e-mode price 0 = no override
                p = fallback * num // den if fallback_keyed else fallback
            if coll:
                v = amount * p // unit
                tc += v
                slt += v * lt
            else:
                td += p * amount // unit
        alt = slt // tc if tc else 0
        if not td:
            return False, alt  # HF = type(uint256).max
        x = (tc * alt + HALF_BPS) // BPS * WAD + td // 2
        if x > UINT256_MAX:
            raise OverflowError("wadDiv overflow")
        return x < HEALTH_FACTOR_LIQUIDATION_THRESHOLD * td, alt

    def estimate(self, alt: int | None, p0: int) -> int | None:
        """The price P (num / den = P / p0) where HF = 1 if values were not floored.

        HF ~ (sum(value * lt) / 10000) / debt, every value linear in P. ``alt`` None:
        slt + P * lt_slope / p0 = 10000 * (td + P * debt_slope / p0); else Aave's floored
        avg LT held at ``alt`` (exact on that step of it): (tc + P * coll_slope / p0) *
        alt = 10000 * (...). None when HF does not rise with P in that model."""
        if alt is None:
            num, den = BPS * self.td - self.slt, self.lt_slope - BPS * self.debt_slope
        else:
            num, den = BPS * self.td - alt * self.tc, alt * self.coll_slope - BPS * self.debt_slope
        return None if den <= 0 else (num * p0 << 64) // den


def _boundary(state: Callable[[int], tuple[bool, int]], lo: int, hi: int,
              guess: Callable[[int | None], int | None]) -> int:  # fmt: skip
    """P in [lo, hi) liquidatable, with P + 1 == hi not liquidatable (given: lo is, hi is not).

    Probes guess(None) (clamped into the bracket), then re-guesses with the floored
    avg LT found at the last probe g. When a re-guess is g or lands past g's end of
    the bracket, the boundary is next to g: widen a bracket around g geometrically
    (1, 2, 4... units) until verified, then bisect. Otherwise (no estimate, or the
    boundary sits on a step of the avg LT and the guesses alternate) bisect the
    bracket the probes narrowed. Every probe keeps the invariant."""
    g = None
    settled = False
    nxt = guess(None)
    if nxt is not None and hi - lo > 1:
        nxt = min(max(nxt, lo + 1), hi - 1)
    for _ in range(6):
        if nxt is None or hi - lo <= 1:
            break
        if nxt == g or not lo < nxt < hi:
            settled = g is not None and (nxt <= lo if g == lo else nxt >= hi)
            break
        g = nxt
        liq, alt = state(g)
        if liq:
            lo = g
        else:
            hi = g
        nxt = guess(alt)
    if settled:
        step = 1
        if lo == g:
            while g + step < hi and state(g + step)[0]:
                lo = g + step
                step <<= 1
            hi = min(hi, g + step)
        else:
            while g - step > lo and not state(g - step)[0]:
                hi = g - step
                step <<= 1
            lo = max(lo, g - step)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if state(mid)[0]:
            lo = mid
        else:
            hi = mid
    return lo


def _price_search(view: MarketView, acct: AaveAccount, t: Totals):
    # -> None | (key, p0, price, one_price): aave_v3.liquidation_price on the view
    _, td, _, _, hf, main = t
    if td == 0 or main is None:
        return None
    e = acct.emode
    _, _, price0, _, _, _, cat = view.reserves[main]
    asset, asset_l, _ = view.assets[main]
    e_price = view.emode[e][2] if e else 0
    source = view.sources[e][0] if e else ""
    key = source if (e and cat == e and e_price != 0) else asset  # aave_v3.price_key
    key_l = key.lower()
    lo = 1 if e_price != 0 and source.lower() == key_l else 0
    p0 = price0 if key_l == asset_l else e_price
    one = _OnePrice(view, acct, key_l)
    if p0 < lo or not one.state(lo, p0 or 1)[0]:
        return None
    if hf < HEALTH_FACTOR_LIQUIDATION_THRESHOLD or p0 == 0:  # liquidatable at p0 already
        return key, p0, p0, one
    price = _boundary(lambda p: one.state(p, p0), lo, p0, lambda a: one.estimate(a, p0))
    return key, p0, price, one


def liquidation_price_on(view: MarketView, acct: AaveAccount, totals: Totals) -> tuple[str, int, int] | None:
    """(key, current_price, price) as ``aave_v3.liquidation_price``; ``totals`` from try_fast_totals."""
    found = _price_search(view, acct, totals)
    return None if found is None else found[:3]


def drop_bps_on(view: MarketView, acct: AaveAccount, totals: Totals) -> int | None:
    """``aave_v3.drop_to_liquidation_bps``; ``totals`` from try_fast_totals (not None)."""
    if totals[1] == 0:
        return None
    if totals[4] < HEALTH_FACTOR_LIQUIDATION_THRESHOLD:
        return 0
    found = _price_search(view, acct, totals)
    if found is None:
        return None
    _, p0, price, one = found
    bps = max(0, BPS + 1 - -(-(price + 1) * BPS // p0))  # p0 * (BPS - bps) // BPS <= price
    while not one.state(BPS - bps, BPS)[0]:  # exactly what shock(market, {key: -bps}) gives
        bps += 1
        if bps > BPS:
            return None
    return bps
