"""Aave V3 interest crossings (keeper.protocols.aave_v3.interest): each crossing is never late
(no second before it is below the threshold) and, when a full recompute at it is below, the
exact second (one second before it is not); and a
market stepped through idle blocks, price moves and reserve updates, recomputing only what
the engine would (the crossings that came, the holders of a moved reserve), ends every step
with the statuses of a full recompute."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import example, given, settings
from hypothesis import strategies as st

from keeper.health.status import Thresholds
from keeper.protocols.aave_v3 import interest
from keeper.protocols.aave_v3.adapter import AaveV3
from keeper.protocols.aave_v3.health import calculate_user_account_data, position_from
from keeper.protocols.aave_v3.math import get_normalized_debt, get_normalized_income
from keeper.triggers import Ahead
from keeper.units import RAY
from tests.unit.test_health_builders import T0, USDC, WBTC, WETH, account, market

E18 = 10**18
TH = Thresholds(E18, 11 * E18 // 10, 15 * E18 // 10)
YEAR_RATE = st.one_of(st.just(0), st.integers(RAY // 20, 3 * RAY))  # up to 300% a year: crossings within days


def _reserves(rates):
    """WETH, WBTC, USDC with the given (liquidity, variable borrow) rates, indexes above 1 and
    a last update before T0."""
    out = []
    for r, (liq, var, ago) in zip((WETH, WBTC, USDC), rates):
        out.append(replace(r, current_liquidity_rate_ray=liq // 3, current_variable_borrow_rate_ray=var,
                           liquidity_index_ray=RAY + liq // 50, variable_borrow_index_ray=RAY + var // 50,
                           last_update_timestamp=T0 - ago))
    return tuple(out)


rates = st.tuples(*[st.tuples(YEAR_RATE, YEAR_RATE, st.integers(0, 86_400))] * 3)
# (WETH collateral, WBTC collateral (scaled), health factor aimed at (bps, at the stored
# indexes), share of the debt in WETH (%), the rest USDC): near the thresholds
positions = st.tuples(st.integers(0, 10**21), st.integers(0, 10**9), st.integers(9_000, 16_000), st.integers(0, 100))


def _account(i, case):
    w, b, hf_bps, pct = case
    lt_value = w * 2_000 * 8_250 // 10**18 + b * 60_000 * 7_500 // 10**8  # USD x bps
    debt_usd_e6 = lt_value * 10**6 // hf_bps  # USD e6
    u = debt_usd_e6 * (100 - pct) // 100
    d = debt_usd_e6 * pct // 100 * 10**12 // 2_000
    a = account({k: v for k, v in ((WETH, w), (WBTC, b)) if v}, {k: v for k, v in ((USDC, u), (WETH, d)) if v})
    return replace(a, account=f"0x{i:040x}")


def _hf(m, a, t):
    """A full recompute (the exact reference path) at time ``t``."""
    at = replace(m, timestamp=t)
    totals = calculate_user_account_data(at, a)
    return None if totals.total_debt_base == 0 else totals.health_factor_wad


@settings(max_examples=150, deadline=None)
@given(rates, positions, st.integers(0, 3_000))
def test_aave_crossing_is_the_exact_second(rs, case, drop_bps):
    m = market(*_reserves(rs))
    a = _account(1, case)
    hf0 = _hf(m, a, T0)  # the threshold: this far below the health factor now (as keeper.triggers asks)
    threshold = E18 if hf0 is None else max(1, hf0 * (10_000 - drop_bps) // 10_000)
    level = interest.crossing(m, a, threshold)

    def below(t):
        hf = _hf(m, a, t)  # None: no debt worth a base unit
        return hf is not None and hf < threshold

    if not any(r.scaled_variable_debt for r in a.reserves):
        assert level is None
        return
    assert level is not None and level > T0 and not below(T0)
    if below(level):  # below there: the first second (never late, and exact)
        assert not below(level - 1)
    # never late: no second before it is below (a sample: the bound is monotone by construction)
    step = max(1, (level - T0) // 64)
    assert not any(below(t) for t in range(T0, level, step))
    if level < T0 + interest.HORIZON_S and not any(r.scaled_a_token for r in a.reserves):
        assert below(level)  # no collateral earning: the bound is the crossing itself
    if not any(rs[i][0] for i in range(3)):  # no supply rate anywhere: exact too
        assert level == T0 + interest.HORIZON_S or below(level)


@settings(max_examples=100, deadline=None)
@given(rates, st.lists(positions, min_size=1, max_size=12),
       st.lists(st.one_of(st.tuples(st.just("time"), st.integers(1, 20 * 86_400)),
                          st.tuples(st.just("price"), st.integers(-2_000, 2_000)),
                          st.tuples(st.just("touch"), st.tuples(st.integers(0, 2), YEAR_RATE))),
                min_size=1, max_size=12))
def test_aave_stepped_through_idle_blocks_equals_a_full_recompute(rs, raw, steps):
    m = market(*_reserves(rs))
    adapter = AaveV3.__new__(AaveV3)
    accounts = [_account(i, c) for i, c in enumerate(raw)]
    holders = {r.id: {a.account for a in accounts if r.id in adapter.keys_of(a)} for r in m.reserves}
    ahead = Ahead(adapter, TH)
    status = {}

    def evaluate(mk, a):
        pos = position_from(mk, a, thresholds=TH, with_drop=False)
        status[a.account] = pos.status
        ahead.keep(mk, a, pos)

    for a in accounts:
        evaluate(m, a)
    for kind, v in steps:
        ts = m.timestamp
        if kind == "time":  # an idle block: nothing but time
            new = replace(m, block=m.block + 1, timestamp=ts + v)
        elif kind == "price":  # WETH's price moves in a block one second later
            r = m.reserves[0]
            new = replace(m, block=m.block + 1, timestamp=ts + 1, reserves=(
                replace(r, price_base=max(1, r.price_base * (10_000 + v) // 10_000)), *m.reserves[1:]))
        else:  # someone supplies or borrows reserve i: its indexes are brought up to now, a new rate
            i, rate = v
            r = m.reserves[i]
            touched = replace(r, liquidity_index_ray=get_normalized_income(r, ts + 1),
                              variable_borrow_index_ray=get_normalized_debt(r, ts + 1),
                              last_update_timestamp=ts + 1, current_variable_borrow_rate_ray=rate,
                              current_liquidity_rate_ray=rate // 4)
            new = replace(m, block=m.block + 1, timestamp=ts + 1,
                          reserves=tuple(touched if k == i else x for k, x in enumerate(m.reserves)))
        level = ahead.accrued(m, new)  # as keeper.engine.on_block
        if kind == "time":
            assert level == new.timestamp
        if level is not None:
            affected = ahead.due(level)
        elif (hit := ahead.price_moved(m, new)) is not None:  # one price: the status bands
            affected = hit | ahead.due_at(new)
        else:
            affected = {a for k in adapter.moved(m, new) for a in holders[k]} | ahead.due_at(new)
        for a in accounts:
            if a.account in affected:
                evaluate(new, a)
        m = new
        assert status == {a.account: position_from(m, a, thresholds=TH, with_drop=False).status
                          for a in accounts}


@settings(max_examples=150, deadline=None)
@given(rates, positions, st.integers(1, 500), st.booleans())
def test_aave_recovery_is_never_late_and_exact_without_debt_interest(rs, case, rise_bps, debt_free):
    """Collateral earning more than the debt costs raises the health factor: ``recovery`` is
    at or before the first second it is at or above the band's top (exact when the debt
    bears no interest)."""
    if debt_free:
        rs = tuple((liq, 0, ago) for liq, _, ago in rs)
    m = market(*_reserves(rs))
    a = _account(1, case)
    hf0 = _hf(m, a, T0)
    if hf0 is None:
        return
    up = hf0 * (10_000 + rise_bps) // 10_000 + 1
    level = interest.recovery(m, a, up)
    if level is None:  # not within the horizon, with no more debt than now
        assert _hf(m, a, T0 + interest.HORIZON_S) < up
        return
    assert level > T0 and _hf(m, a, level - 1) < up
    if debt_free:
        assert _hf(m, a, level) >= up


@settings(max_examples=150, deadline=None)
@given(rates, positions, st.integers(1, 10 * 86_400), st.integers(0, 1), st.integers(-300, 300))
@example(((0, RAY, 0), (0, 0, 0), (0, 0, 0)), (0, 10**8, 11_350, 100), 255_000, 1, -54)  # WBTC vs WETH debt at 100%
def test_aave_price_move_after_time_is_named_by_its_band_or_its_crossing(rs, case, dt, which, move_bps):
    """A band is computed at t0; time moves dt (no block in between) and one price moves: a
    position whose status changed is named by the band (``price_moved``) or by its crossing
    (capped at the band's window: ``due_at``), as keeper.engine.on_block asks them."""
    m = market(*_reserves(rs))
    adapter = AaveV3.__new__(AaveV3)
    a = _account(1, case)
    ahead = Ahead(adapter, TH)
    pos = position_from(m, a, thresholds=TH, with_drop=False)
    ahead.keep(m, a, pos)
    i = (0, 1)[which]  # WETH or WBTC
    r = m.reserves[i]
    new = replace(m, block=m.block + 1, timestamp=m.timestamp + dt, reserves=tuple(
        replace(x, price_base=max(1, r.price_base * (10_000 + move_bps) // 10_000)) if k == i else x
        for k, x in enumerate(m.reserves)))
    after = position_from(new, a, thresholds=TH, with_drop=False).status
    named = (ahead.price_moved(m, new) or set()) | ahead.due_at(new)
    assert after == pos.status or a.account in named
