"""Aave V3 interest crossings (keeper.triggers ``Crossings``), pure: the accrual level is the
block timestamp, and per position the first second at which interest alone takes its health
factor below its next threshold.

Between two blocks in which no reserve of the market moved (price, stored indexes, rates,
configuration, reliability: ``accrued``), only time moves the accounts: each reserve's
normalized debt compounds per second and its normalized income grows linearly, both from
the reserve's last update, with Aave's own rounding (math.py / math36.py). A position's
health factor at time t is then the exact account math on the market with ``timestamp = t``;
nothing else of it changes until one of its reserves moves (the engine then re-evaluates
its holders, which sets a new crossing).

``crossing`` bisects, on that exact math, a bound that is never late: the health factor
with the collateral held at t0 and the debt growing, hf_low(t) = C(t0) / D(t) <= hf(t).
hf_low only falls with t (D never shrinks), so the lowest t with hf_low(t) < T is found
exactly, and no t before it has hf(t) < T. It is the first second hf(t) < T itself when the
collateral earns nothing, and whenever hf is below T there; otherwise it is earlier (the
position is recomputed then and gets the next bound, closer). The true hf is not monotone
in t: a dust balance's rounding steps up with the income index (56 -> 57 units), so hf can
dip below T and come back, which a bisection on hf itself would step over (Hypothesis found
one). (Rounding of the average LT can still make hf twitch by a unit of LT with several
collaterals: such a dip before the bound would be seen at the bound.) A position that does not
cross within ``HORIZON_S`` gets ``t0 + HORIZON_S``: it is simply recomputed then (earlier
is allowed, never later). Stable debt (3.0.x) is held at its read balance, as the engine's
evaluation holds it; an account with any is due every block, like the liquidatable ones.

The horizon is one prepared view for all positions (``fast.prepare``, memoized per market):
a full scan pays one evaluation per position far from a threshold; one that crosses within
the horizon bisects, about log2(HORIZON_S) = 20 evaluations, each bringing only its own
reserves' indexes to the time tried (``_own_view``). 3.6 markets use math36's walk.
"""

from __future__ import annotations

from dataclasses import replace

from keeper.protocols.aave_v3.account import _reserve
from keeper.protocols.aave_v3.fast import INDEX_PRICE_BITS, MarketView, _small, fast_totals, prepare
from keeper.protocols.aave_v3.math import get_normalized_debt, get_normalized_income
from keeper.protocols.aave_v3.math36 import is_v36, normalized_debt, normalized_income, walk
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState

HORIZON_S = 7 * 86_400  # a position that does not cross within 7 days is recomputed then
_VIEWS_KEPT = 4096


def _fixed(m: AaveMarketState) -> tuple:
    """What time alone leaves as it is (everything but the block and its timestamp)."""
    return (m.pool, m.base_currency_unit, m.reserves, m.emode_categories, m.unreliable_assets,
            m.version, m.revision)


def accrued(old: AaveMarketState | None, new: AaveMarketState) -> int | None:
    """``new.timestamp`` when only time moved the market since ``old``, else None."""
    if old is None or new.timestamp < old.timestamp or _fixed(old) != _fixed(new):
        return None
    return new.timestamp


def level(market: AaveMarketState) -> int:
    """The market's accrual level: its timestamp (crossings hold across other reserves' moves)."""
    return market.timestamp


class _Clock:
    """Prepared views of a few markets at other timestamps (the last few markets only)."""

    __slots__ = ("markets",)

    def __init__(self) -> None:
        self.markets: dict[int, tuple[AaveMarketState, dict[int, MarketView]]] = {}

    def view(self, market: AaveMarketState, t: int) -> MarketView:
        hit = self.markets.get(id(market))
        if hit is None or hit[0] is not market:
            if len(self.markets) >= 4:
                del self.markets[next(iter(self.markets))]
            hit = self.markets[id(market)] = (market, {})  # the reference keeps id() unique
        views = hit[1]
        v = views.get(t)
        if v is None:
            if len(views) >= _VIEWS_KEPT:
                views.clear()
            v = views[t] = prepare(replace(market, timestamp=t))
        return v


_CLOCK = _Clock()


def view_at(market: AaveMarketState, t: int) -> MarketView:
    """The prepared view of ``market`` with time moved to ``t`` (memoized with the last few)."""
    return _CLOCK.view(market, t)
_FROZEN: dict[str, tuple[AaveMarketState, AaveMarketState]] = {}  # side -> (market, that side held)


def _debt_frozen(market: AaveMarketState) -> AaveMarketState:
    """``market`` with every reserve's debt index held at ``market.timestamp`` (no borrow rate),
    the supply side unchanged: at a later time t its health factors are the highest the
    account can have at t (the same collateral, no more debt)."""
    hit = _FROZEN.get("debt")
    if hit is not None and hit[0] is market:
        return hit[1]
    debt = normalized_debt if is_v36(market) else get_normalized_debt
    frozen = replace(market, reserves=tuple(
        replace(r, variable_borrow_index_ray=debt(r, market.timestamp), current_variable_borrow_rate_ray=0)
        for r in market.reserves))
    _FROZEN["debt"] = (market, frozen)
    return frozen


def _income_frozen(market: AaveMarketState) -> AaveMarketState:
    """``market`` with every reserve's liquidity index held at ``market.timestamp`` (no supply
    rate), the debt side unchanged: at a later time t its health factors are the lowest the
    account can have at t (the same debt, no more collateral), falling with t."""
    hit = _FROZEN.get("income")
    if hit is not None and hit[0] is market:
        return hit[1]
    income = normalized_income if is_v36(market) else get_normalized_income
    frozen = replace(market, reserves=tuple(
        replace(r, liquidity_index_ray=income(r, market.timestamp), current_liquidity_rate_ray=0)
        for r in market.reserves))
    _FROZEN["income"] = (market, frozen)
    return frozen


def hf_at(market: AaveMarketState, acct: AaveAccount, t: int, shared: bool = True) -> int | None:
    """``acct``'s health factor (wad) at time ``t`` with nothing but time moved; None without
    debt. ``shared``: a timestamp many positions ask for (a prepared view, memoized);
    otherwise only ``acct``'s own reserves are brought to ``t`` (``_own_view``)."""
    if is_v36(market):
        totals = walk(replace(market, timestamp=t), acct).totals
        return None if totals.total_debt_base == 0 else totals.health_factor_wad
    view = _CLOCK.view(market, t) if shared else _own_view(market, acct, t)
    _, td, _, _, hf, _ = fast_totals(view, acct)
    return None if td == 0 else hf


def _own_view(market: AaveMarketState, acct: AaveAccount, t: int) -> MarketView:
    """The prepared view of ``market`` with the reserves ``acct`` holds at ``t`` (the others,
    which its math never reads, left at ``market.timestamp``): what ``prepare`` would give
    for them, at the cost of their indexes alone. Outside the fast path's bounds: ``prepare``."""
    base = _CLOCK.view(market, market.timestamp)
    rows = list(base.reserves)
    for ur in acct.reserves:
        i = ur.reserve_id
        entry = rows[i] if 0 <= i < len(rows) else None
        if entry is None:  # the exact path decides for this account: a full view at t
            return _CLOCK.view(market, t)
        r = _reserve(market, i)
        income, debt = get_normalized_income(r, t), get_normalized_debt(r, t)
        if not _small(income, debt, bits=INDEX_PRICE_BITS):
            return _CLOCK.view(market, t)
        rows[i] = (income, debt, *entry[2:])
    return MarketView(replace(market, timestamp=t), tuple(rows), base.assets, base.emode, base.sources)


def crossing(market: AaveMarketState, acct: AaveAccount, hf_wad: int) -> int | None:
    """A timestamp at or before the first at which ``acct``'s health factor is below ``hf_wad``
    (module doc: that second itself when the health factor is below there), ``t0 +
    HORIZON_S`` when not within it; None when it has no debt (interest cannot get it there).
    ``hf_wad`` is at or below its health factor now (keeper.triggers asks for the next
    threshold below its status): one evaluation, at the horizon, for most positions."""
    t0 = market.timestamp
    if not any(r.scaled_variable_debt or r.stable_debt for r in acct.reserves):
        return None
    if any(r.stable_debt for r in acct.reserves):
        return t0 + 1

    low = _income_frozen(market)  # hf_low: monotone, never above hf (module doc)

    def below(t: int, shared: bool = False) -> bool:
        hf = hf_at(low, acct, t, shared)
        return hf is not None and hf < hf_wad

    try:
        lo, hi = t0, t0 + HORIZON_S
        if not below(hi, True):  # every position asks for the horizon: one prepared view
            return hi
        while hi - lo > 1:  # hf(lo) >= T > hf(hi)
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if below(mid) else (mid, hi)
        return hi
    except (ArithmeticError, ValueError):  # outside what Aave computes: every block
        return t0 + 1


def recovery(market: AaveMarketState, acct: AaveAccount, hf_wad: int) -> int | None:
    """A timestamp at or before the first at which ``acct``'s health factor is at or above
    ``hf_wad`` (collateral earning more than the debt costs), from the highest it can be at
    each time (``_debt_frozen``: monotone, so the bisection is sound): exact when its debt
    has no interest, earlier otherwise. None when it does not get there within the horizon
    (``crossing`` has it recomputed by then) or has no collateral."""
    t0 = market.timestamp
    if not any(r.scaled_a_token for r in acct.reserves) or any(r.stable_debt for r in acct.reserves):
        return None
    frozen = _debt_frozen(market)

    def above(t: int, shared: bool = False) -> bool:
        hf = hf_at(frozen, acct, t, shared)
        return hf is None or hf >= hf_wad

    try:
        lo, hi = t0, t0 + HORIZON_S
        if above(lo, True):
            return t0
        if not above(hi, True):
            return None
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if above(mid) else (mid, hi)
        return hi
    except (ArithmeticError, ValueError):
        return t0 + 1
