"""keeper.triggers with the Morpho Blue and Compound V3 trigger math: each crossing level and
each liquidation price is the exact edge (one unit lower / higher is on the other side), and
a market stepped through interest and price moves with only the positions the triggers name
recomputed ends with the statuses of a full recompute, every step."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import example, given, settings
from hypothesis import strategies as st

from keeper.health.status import Thresholds, classify
from keeper.model import Status
from keeper.protocols.compound_v3 import math as cm
from keeper.protocols.compound_v3 import triggers as ct
from keeper.protocols.compound_v3.adapter import CompoundV3
from keeper.protocols.morpho_blue import math as mm
from keeper.protocols.morpho_blue import triggers as mt
from keeper.protocols.morpho_blue.adapter import MorphoMarketAdapter
from keeper.triggers import Ahead, Crossings, PriceTriggers, next_threshold
from tests.unit.test_comet_math import USDC, WBTC, WETH
from tests.unit.test_comet_math import market as comet_market
from tests.unit.test_morpho_math import PARAMS, mkt

E18 = 10**18
TH = Thresholds(E18, 11 * E18 // 10, 15 * E18 // 10)
hfs = st.sampled_from([E18, 11 * E18 // 10, 15 * E18 // 10, 1, 3 * E18])


def acct_id(i: int) -> str:
    return "0x" + f"{i:040x}"


# ------------------------------------------------------------------ the book, by hand


def test_crossings_pop_in_level_order_and_forget_replaced_levels():
    c = Crossings()
    c.set("a", 10)
    c.set("b", 5)
    c.set("a", 20)  # replaced: the old 10 is stale
    c.set("c", None)
    assert c.due(4) == set()
    assert c.due(10) == {"b"}
    assert c.due(19) == set()
    assert c.due(25) == {"a"}
    assert len(c) == 0


def test_price_triggers_name_positions_on_both_sides():
    p = PriceTriggers()
    p.set("a", [("weth", 100, True)])
    p.set("b", [("weth", 150, True), ("usdc", 9, False)])
    assert p.liquidated_by("weth", 151) == set()
    assert p.liquidated_by("weth", 150) == {"b"}
    assert p.liquidated_by("weth", 1) == {"a", "b"}
    assert p.liquidated_by("usdc", 8) == set()
    assert p.liquidated_by("usdc", 9) == {"b"}
    p.set("b", [])
    assert p.liquidated_by("weth", 1) == {"a"}
    assert next_threshold(Status.LIQUIDATABLE, TH) is None


# ------------------------------------------------------------------ Morpho Blue edges


morpho_cases = st.tuples(st.integers(10**6, 10**15), st.integers(1, 99), st.integers(1, 10**40),
                         st.integers(1, E18 - 1), st.integers(1, 10**24), st.integers(0, 10**30))


def _morpho(case):
    tsa, util, price, lltv, shares, coll = case
    m = mkt(tsa=tsa, tba=tsa * util // 100, price=price, params=replace(PARAMS, lltv=lltv))
    return m, mm.MorphoPosition(acct_id(1), 0, min(shares, m.total_borrow_shares) or 1, coll)


def _morpho_hf(m, p, tba):
    return mm.health(replace(m, total_borrow_assets=tba), p)[2]


@given(morpho_cases, hfs)
def test_morpho_crossing_is_the_exact_level(case, t):
    m, p = _morpho(case)
    level = mt.crossing(m, p, t)
    hf = _morpho_hf(m, p, level)
    assert hf is not None and hf < t
    if level > 0:
        before = _morpho_hf(m, p, level - 1)
        assert before is None or before >= t


@given(morpho_cases)
def test_morpho_liquidation_price_is_the_exact_edge(case):
    m, p = _morpho(case)
    ((key, price, falls),) = mt.liquidation_prices(m, p)
    assert key == PARAMS.oracle.lower() and falls
    assert not mm.is_healthy(m, p, price)
    assert mm.is_healthy(m, p, price + 1) or p.collateral == 0


# ------------------------------------------------------------------ Compound V3 edges


comet_cases = st.tuples(st.integers(-(10**13), -1), st.integers(0, 10**20), st.integers(0, 10**9),
                        st.integers(10**15, 3 * 10**15), st.integers(1, 10**12), st.integers(1, 10**14),
                        st.integers(1, 10**9))


def _comet(case):
    principal, weth, wbtc, index, weth_e8, wbtc_e8, usdc_e8 = case
    m = comet_market(weth_e8=weth_e8, wbtc_e8=wbtc_e8, usdc_e8=usdc_e8, borrow_index=index)
    return m, cm.CometAccount(acct_id(2), principal, {k: v for k, v in ((WETH, weth), (WBTC, wbtc)) if v})


def _comet_liquidatable(m, a) -> bool:
    t = cm._totals(m, a, strict=False)
    return t.liquidation_value < t.debt_value


@given(comet_cases, hfs)
def test_comet_crossing_is_the_exact_index(case, t):
    m, a = _comet(case)
    level = ct.crossing(m, a, t)
    hf = cm.hf_wad(replace(m, base_borrow_index=level), a)
    assert hf is not None and hf < t
    before = cm.hf_wad(replace(m, base_borrow_index=level - 1), a)
    assert before is None or before >= t


@given(comet_cases)
def test_comet_liquidation_prices_are_the_exact_edges(case):
    m, a = _comet(case)
    for key, price, falls in ct.liquidation_prices(m, a):
        asset = next(x for x in (USDC, WETH, WBTC) if x.lower() == key)
        at = replace(m, prices_e8={**m.prices_e8, asset: price})
        beyond = replace(m, prices_e8={**m.prices_e8, asset: price + (1 if falls else -1)})
        assert _comet_liquidatable(at, a)
        assert not _comet_liquidatable(beyond, a)


# ------------------------------------------------------------------ stepped markets


class _Pos:
    __slots__ = ("account", "status")

    def __init__(self, account, status):
        self.account, self.status = account, status


def ahead_over(adapter, market, accounts, status_of, deferred: bool = False):
    """(Ahead, statuses, evaluate): every position evaluated once and kept by the triggers;
    ``evaluate(market, account)`` re-evaluates one, as the engine does (``deferred``: its
    triggers kept later, ``Ahead.settle``, as a block tick under ``keeper run`` does)."""
    ahead = Ahead(adapter, TH)
    status = {}

    def evaluate(m, a, later=False):
        status[a.account] = status_of(m, a)
        (ahead.defer if later else ahead.keep)(m, a, _Pos(a.account, status[a.account]))

    for a in accounts:
        evaluate(market, a)
    return ahead, status, lambda m, a: evaluate(m, a, deferred)


def _step(adapter, market, accounts, steps, status_of, liquidatable, accrue, reprice, settles=None):
    """Evaluate every position once; then per step recompute only what the triggers name,
    as keeper.engine.on_block does, and compare with a full recompute. A price step first
    asks the price triggers who the new price liquidates. ``settles``: the steps' triggers
    deferred, and settled after step i when ``settles[i]`` (cycled; empty: never): until
    then the stale ones are recomputed every step, as the engine does."""
    ahead, status, evaluate = ahead_over(adapter, market, accounts, status_of, settles is not None)
    for i, (kind, v) in enumerate(steps):
        if kind == "price":
            new, key, price = reprice(market, v)
            named = ahead.candidates(key, price)
            held = {a for a, ts in ahead.prices.of.items() if any(k == key for k, _, _ in ts)}
            truly = {a.account for a in accounts if a.account in held and liquidatable(new, a)}
            assert truly <= named  # every one, and a few that one exact evaluation clears
            assert all(liquidatable(new, a) == liquidatable(market, a) for a in accounts if a.account not in held)
        else:
            new = accrue(market, v)
        level = ahead.accrued(market, new)
        if kind == "time":
            assert level is not None
        due = None if level is None else ahead.due(level) | ahead.stale()
        for a in accounts if due is None else [a for a in accounts if a.account in due]:
            evaluate(new, a)
        market = new
        assert status == {a.account: status_of(market, a) for a in accounts}
        if settles is not None:
            assert ahead.stale() == (due if due is not None else {a.account for a in accounts})
            if settles and settles[i % len(settles)]:
                n = len(ahead.pending)
                assert ahead.settle() == n and not ahead.stale()


steps = st.lists(st.one_of(st.tuples(st.just("time"), st.integers(1, 30 * 86_400)),
                           st.tuples(st.just("price"), st.integers(-3_000, 3_000))), max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**22), st.integers(9_000, 17_000)), min_size=1, max_size=25), steps,
       st.none() | st.lists(st.booleans(), max_size=4))
def test_morpho_stepped_through_interest_and_prices_equals_a_full_recompute(raw, moves, settles):
    m = mkt(tsa=10**13, tba=9 * 10**12, price=mm.ORACLE_PRICE_SCALE // 10**12 * 2_000)
    accounts = []
    for i, (s, hf_bps) in enumerate(raw):  # near the thresholds: a collateral for that health factor
        s = min(s, m.total_borrow_shares)
        debt = mm.to_assets_up(s, m.total_borrow_assets, m.total_borrow_shares)
        coll = debt * hf_bps * mm.WAD // 10_000 * mm.ORACLE_PRICE_SCALE // m.params.lltv // m.price
        accounts.append(mm.MorphoPosition(acct_id(i), 0, s, coll))

    def reprice(mk, bps):
        price = mk.price * (10_000 + bps) // 10_000
        return replace(mk, price=price), PARAMS.oracle.lower(), price

    _step(MorphoMarketAdapter.__new__(MorphoMarketAdapter), m, accounts, moves,
          lambda mk, a: classify(mm.health(mk, a)[2], TH), lambda mk, a: not mm.is_healthy(mk, a),
          lambda mk, dt: mm.accrue(mk, mk.timestamp + dt), reprice, settles)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-(10**12), 10**10), st.integers(9_000, 17_000), st.integers(0, 100)),
                min_size=1, max_size=25),
       st.sampled_from([WETH, WBTC, USDC]), steps, st.none() | st.lists(st.booleans(), max_size=4))
@example(raw=[(-809, 13877, 31)], asset=USDC, moves=[("price", 1), ("time", 484242)], settles=[])  # never
# settled: its crossing is gone with the stale triggers, only ``stale`` names it when interest liquidates it
def test_comet_stepped_through_interest_and_prices_equals_a_full_recompute(raw, asset, moves, settles):
    m = replace(comet_market(total_borrow=1_900_000 * 10**6), timestamp=1_000)
    accounts = []
    for i, (p, hf_bps, weth_pct) in enumerate(raw):  # near the thresholds: collateral for that HF
        debt_e8 = max(-p, 0) * 10**8 // 10**6  # USDC at $1
        weth = debt_e8 * hf_bps * weth_pct // 1_000_000 * 10**18 // (2_000 * 10**8) * 10**18 // (895 * 10**15)
        wbtc = debt_e8 * hf_bps * (100 - weth_pct) // 1_000_000 * 10**8 // (60_000 * 10**8) * 10**18 // (77 * 10**16)
        accounts.append(cm.CometAccount(acct_id(i), p, {k: v for k, v in ((WETH, weth), (WBTC, wbtc)) if v}))

    def reprice(mk, bps):
        price = mk.prices_e8[asset] * (10_000 + bps) // 10_000
        return replace(mk, prices_e8={**mk.prices_e8, asset: price}), asset.lower(), price

    def liquidatable(mk, a):
        return a.principal < 0 and _comet_liquidatable(mk, a)

    _step(CompoundV3.__new__(CompoundV3), m, accounts, moves,
          lambda mk, a: cm.position_from(mk, a, TH, with_drop=False).status, liquidatable,
          lambda mk, dt: cm.accrue(mk, mk.timestamp + dt), reprice, settles)


# ------------------------------------------------------------------ Aave V3 (3.0.2)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(10**15, 10**21), st.integers(10**6, 10**11)), min_size=1, max_size=12),
       st.integers(-6_000, 3_000))
def test_aave_price_triggers_name_exactly_who_a_collateral_price_liquidates(raw, bps):
    from keeper.protocols.aave_v3 import triggers as at
    from keeper.protocols.aave_v3.health import calculate_user_account_data, shock
    from tests.unit.test_health_builders import USDC as A_USDC
    from tests.unit.test_health_builders import WETH as A_WETH
    from tests.unit.test_health_builders import account, market

    m = market()
    accounts = {acct_id(i): replace(account({A_WETH: c}, {A_USDC: d}), account=acct_id(i))
                for i, (c, d) in enumerate(raw)}
    book = PriceTriggers()
    for a, acct in accounts.items():
        book.set(a, at.liquidation_prices(m, acct))
    moved = shock(m, {A_WETH.asset: bps})
    price = next(r.price_base for r in moved.reserves if r.asset == A_WETH.asset)

    def liquidatable(mk, acct):
        return calculate_user_account_data(mk, acct).health_factor_wad < E18

    assert book.liquidated_by(A_WETH.asset.lower(), price) == {
        a for a, acct in accounts.items() if liquidatable(moved, acct)}
