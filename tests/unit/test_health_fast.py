"""keeper.protocols.aave_v3.fast: the same numbers as the exact aave_v3 math, on random markets and accounts."""

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from keeper.errors import SourceError
from keeper.protocols.aave_v3 import fast
from keeper.protocols.aave_v3.math import reserve_ids_in_use
from keeper.protocols.aave_v3.health import (
    _drop_to_liquidation_bps_reference,
    _is_zero_address,
    _liquidation_price_reference,
    _reserve,
    _scale_prices,
    account_data,
    calculate_user_account_data,
    drop_to_liquidation_bps,
    liquidation_price,
    main_collateral,
    position_from,
    price_key,
    shock,
)
from keeper.health.status import classify
from keeper.model import Position
from keeper.protocols.aave_v3.model import EModeCategory
from keeper.units import RAY, SECONDS_PER_YEAR, WAD
from tests.unit.test_health_builders import (
    CRV, ETH_EMODE, NOLT, T0, USDC, WBTC, WETH, WSTETH, ZERO, account, address, market, reserve,
)  # fmt: skip

E18, E8, E6 = 10**18, 10**8, 10**6
EXAMPLES = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ strategies


@st.composite
def markets(draw, min_reserves: int = 2, max_reserves: int = 6, interest: bool = True):
    """Random reserves (decimals, prices incl. 0, LT 0, LTV 0, e-mode 0/1/2, accrued interest)
    and two e-mode categories priced by nothing, a listed asset or an outside feed."""
    reserves = []
    for i in range(draw(st.integers(min_reserves, max_reserves))):
        lt = draw(st.sampled_from([0, 4_500, 7_500, 8_250, 9_300]) | st.integers(1, 10_000))
        ltv = draw(st.sampled_from([0, lt]) | st.integers(0, lt))
        kw = {}
        if interest and draw(st.booleans()):
            kw = dict(
                liquidity_index_ray=draw(st.integers(RAY, 3 * RAY)),
                variable_borrow_index_ray=draw(st.integers(RAY, 3 * RAY)),
                current_liquidity_rate_ray=draw(st.integers(0, RAY)),
                current_variable_borrow_rate_ray=draw(st.integers(0, RAY)),
                last_update_timestamp=T0 - draw(st.sampled_from([0, 1, 3_600, SECONDS_PER_YEAR])),
            )  # fmt: skip
        decimals = draw(st.sampled_from([0, 2, 6, 8, 18, 24]))
        price = draw(st.sampled_from([0, 1, E8, 2_000 * E8]) | st.integers(0, 10**13))
        reserves.append(reserve(i, f"R{i}", decimals, price, ltv, lt, emode=draw(st.sampled_from([0, 0, 1, 2])), **kw))
    categories = []
    for cid in (1, 2):
        source = draw(st.sampled_from([ZERO, address(0xE0 + cid), *(r.asset for r in reserves)]))
        lt = draw(st.integers(1, 9_900))
        price = draw(st.sampled_from([0, 1, 2_000 * E8]) | st.integers(0, 10**13))
        categories.append(EModeCategory(cid, draw(st.integers(0, lt)), lt, 10_100, source, price, f"c{cid}"))
    return market(*reserves, emode=tuple(categories))


@st.composite
def accounts(draw, m, amounts=st.integers(0, 10**30), emode=st.sampled_from([0, 0, 1, 2])):
    """Any subset of the market's reserves as collateral, debt (variable, stable) or both."""
    chosen = draw(st.lists(st.sampled_from(m.reserves), unique_by=lambda r: r.id, max_size=len(m.reserves)))
    coll, debt, stable = {}, {}, {}
    for r in chosen:
        kind = draw(st.sampled_from(["c", "d", "cd"]))
        if "c" in kind:
            coll[r] = draw(amounts)
        if "d" in kind:
            debt[r] = draw(amounts)
            if draw(st.booleans()):
                stable[r] = draw(amounts)
    return account(coll, debt, stable, emode=draw(emode))


def exact(m, acct):
    """calculate_user_account_data + main_collateral(...).id, or the exception type they raise."""
    try:
        t = calculate_user_account_data(m, acct)
        main = main_collateral(m, acct)
    except Exception as e:  # noqa: BLE001 -- the fast path must raise the same
        return type(e)
    return (t.total_collateral_base, t.total_debt_base, t.avg_ltv_bps, t.avg_liquidation_threshold_bps,
            t.health_factor_wad, None if main is None else main.id)  # fmt: skip


def fast_or_error(view, acct):
    try:
        return fast.fast_totals(view, acct)
    except Exception as e:  # noqa: BLE001
        return type(e)


def liquidatable(m, acct) -> bool:
    return account_data(m, acct).health_factor_wad < WAD


# -------------------------------------------------------------------- totals


@EXAMPLES
@given(st.data())
def test_fast_totals_equal_the_exact_math(data):
    m = data.draw(markets())
    acct = data.draw(accounts(m))
    view = fast.prepare(m)
    want = exact(m, acct)
    assert fast_or_error(view, acct) == want
    if not isinstance(want, type):  # every input here is inside the fast path's bounds
        assert fast.try_fast_totals(view, acct) == want
        assert fast.fast_account_data(view, acct) == account_data(m, acct)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_fast_totals_outside_the_bounds_fall_back_to_the_exact_math(data):
    # balances up to 2**250: past 2**128 the exact path decides, overflow included
    m = data.draw(markets(interest=False))
    acct = data.draw(accounts(m, amounts=st.integers(0, 2**250) | st.sampled_from([2**128 - 1, 2**128])))
    assert fast_or_error(fast.prepare(m), acct) == exact(m, acct)


def test_fallbacks_raise_what_the_exact_math_raises():
    m = market()
    view = fast.prepare(m)
    ok = account({WETH: E18}, {USDC: E6})
    cases = [
        replace(ok, emode=7),  # category the market lacks
        replace(ok, reserves=ok.reserves[:1]),  # bits without balances
        replace(ok, user_config=ok.user_config | 1 << (2 * 100)),  # reserve the market lacks
        replace(ok, reserves=(replace(ok.reserves[0], scaled_a_token=-1), ok.reserves[1])),
    ]
    for acct in cases:
        want = exact(m, acct)
        assert isinstance(want, type) and fast_or_error(view, acct) is want
    with pytest.raises(SourceError, match="reserve 100, absent"):
        fast.fast_totals(view, cases[2])
    # a duplicate balance row: the exact path keeps the last one
    dup = replace(ok, reserves=(*ok.reserves, replace(ok.reserves[0], scaled_a_token=2 * E18)))
    assert fast.fast_totals(view, dup) == exact(m, dup)
    # wadDiv overflow inside the per-input bounds: 2**200 of collateral value, any debt
    x = reserve(0, "X", 0, 2**73, 8_000, 8_000)
    hm, huge = market(x, WBTC, USDC), account({x: 2**127}, {USDC: 1})
    hv = fast.prepare(hm)
    assert fast.try_fast_totals(hv, huge) is None  # the one check the fast path keeps
    assert exact(hm, huge) is OverflowError and fast_or_error(hv, huge) is OverflowError


def test_a_reserve_whose_interest_reverts_only_matters_where_it_is_read():
    # timestamp before the last update: calculateLinearInterest reverts (underflow)
    future = replace(USDC, last_update_timestamp=T0 + 10, current_liquidity_rate_ray=RAY // 10)
    m = market(WETH, WBTC, future)
    view = fast.prepare(m)
    assert view.reserves[future.id] is None  # left to the exact path
    borrow_only = account({WETH: E18}, {future: 0}, stable={future: 100 * E6})
    assert fast.fast_totals(view, borrow_only) == exact(m, borrow_only)
    supplied = account({WETH: E18, future: E6}, {WBTC: 1})
    assert exact(m, supplied) is OverflowError and fast_or_error(view, supplied) is OverflowError


def test_zero_lt_zero_ltv_and_emode_examples():
    m = market()
    view = fast.prepare(m)
    for acct in (
        account({WETH: E18, NOLT: 1_000 * E18}, {USDC: 1_000 * E6}),
        account({WETH: E18, CRV: 2_000 * E18}, {USDC: 1_000 * E6}),
        account({WETH: E18, WSTETH: E18, USDC: 1_000 * E6}, {WETH: E18}, emode=1),
        account({NOLT: E18}, {USDC: E6}),  # no counted collateral: main None, HF 0
        account(),
    ):
        assert fast.fast_totals(view, acct) == exact(m, acct)
    assert fast.fast_totals(view, account({NOLT: E18}, {USDC: E6}))[4:] == (0, None)


def test_main_collateral_ties_go_to_the_lowest_id():
    a, b = reserve(0, "A", 18, E8, 8_000, 8_000), reserve(1, "B", 18, E8, 7_000, 7_500)
    m = market(a, b, USDC)
    acct = account({b: E18, a: E18}, {USDC: E6})
    acct = replace(acct, reserves=tuple(reversed(acct.reserves)))  # rows in any order
    assert fast.fast_totals(fast.prepare(m), acct)[5] == 0 == main_collateral(m, acct).id


def test_view_for_memoizes_by_identity():
    m1, m2 = market(), market()
    v1 = fast.view_for(m1)
    assert fast.view_for(m1) is v1 and fast.view_for(m1, v1) is v1
    assert fast.view_for(m2, v1) is not v1  # a view of another market object is not used
    assert fast.view_for(m2).market is m2


# ------------------------------------------------------------------ the drop


def _reference_keys(m, acct):
    """(main collateral's price key, every price key the account's debt reads)."""
    main = main_collateral(m, acct)
    key = price_key(m, acct, main).lower()
    debt_keys = set()
    for ur in acct.reserves:
        r = _reserve(m, ur.reserve_id)
        if ur.scaled_variable_debt or ur.stable_debt:
            debt_keys |= {r.asset.lower(), price_key(m, acct, r).lower()}
    return key, debt_keys


@EXAMPLES
@given(st.data())
def test_drop_equals_the_bisection_for_one_collateral(data):
    # one collateral and debt that does not move with it: HF is monotone in the
    # price, the liquidation price is unique and both searches must find it
    m = data.draw(markets(min_reserves=3))
    ids = data.draw(st.lists(st.sampled_from(range(len(m.reserves))), min_size=2, unique=True))
    coll, debts = m.reserves[ids[0]], [m.reserves[i] for i in ids[1:]]
    amount = st.integers(1, 10**30)
    acct = account({coll: data.draw(amount)}, {r: data.draw(amount) for r in debts},
                   emode=data.draw(st.sampled_from([0, 0, 1, 2])))  # fmt: skip
    assume(not isinstance(exact(m, acct), type) and main_collateral(m, acct) is not None)
    key, debt_keys = _reference_keys(m, acct)
    assume(key not in debt_keys)
    view = fast.prepare(m)
    assert liquidation_price(m, acct, view) == _liquidation_price_reference(m, acct)
    assert drop_to_liquidation_bps(m, acct, view) == _drop_to_liquidation_bps_reference(m, acct)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([WETH, WBTC, USDC, CRV]), st.integers(1, 10**26),
       st.lists(st.sampled_from([WETH, WBTC, USDC]), min_size=1, max_size=3, unique=True),
       st.lists(st.integers(1, 10**26), min_size=3, max_size=3))  # fmt: skip
def test_drop_equals_the_bisection_on_the_builder_market(coll, amount, debt_assets, debt_amounts):
    # the debt may be the collateral asset too; the two searches still agree here
    m = market()
    acct = account({coll: amount}, dict(zip(debt_assets, debt_amounts)))
    assert drop_to_liquidation_bps(m, acct, fast.prepare(m)) == _drop_to_liquidation_bps_reference(m, acct)


@EXAMPLES
@given(st.data())
def test_returned_drop_liquidates_and_the_price_is_a_boundary(data):
    m = data.draw(markets())
    acct = data.draw(accounts(m, amounts=st.integers(1, 10**30)))
    assume(not isinstance(exact(m, acct), type))
    view = fast.prepare(m)
    bps = drop_to_liquidation_bps(m, acct, view)
    lp = liquidation_price(m, acct, view)
    if bps == 0:
        assert liquidatable(m, acct)
    elif bps is not None:
        assert 0 < bps <= 10_000
        assert liquidatable(shock(m, {price_key(m, acct, main_collateral(m, acct)): -bps}), acct)
    if lp is not None:
        key, p0 = lp.key.lower(), lp.current_price
        assert liquidatable(_scale_prices(m, key, lp.price, p0 or 1), acct)
        assert lp.price == p0 or not liquidatable(_scale_prices(m, key, lp.price + 1, p0), acct)
    ref = _liquidation_price_reference(m, acct)
    assert (lp is None) == (ref is None)
    assert lp is None or (lp.key, lp.current_price) == (ref.key, ref.current_price)


def test_drop_when_the_emode_price_scales_to_zero():
    # the category is priced by WETH's own feed below WETH's price: under a deep enough
    # drop the category price floors to 0 and Aave falls back to the assets' own prices
    low = EModeCategory(1, 9_000, 9_300, 10_100, WETH.asset, 10, "ETH, tiny price")
    m = market(emode=(low,))
    acct = account({WETH: 10 * E18, WSTETH: E18}, {USDC: 100 * E6}, emode=1)
    view = fast.prepare(m)
    for a in (acct, replace(acct, emode=0)):
        bps = drop_to_liquidation_bps(m, a, view)
        assert bps == _drop_to_liquidation_bps_reference(m, a)
        if bps is not None:
            assert liquidatable(shock(m, {price_key(m, a, main_collateral(m, a)): -bps}), a)


def test_drop_outside_the_bounds_uses_the_reference():
    big = replace(WETH, price_base=2**100)  # past the fast path's 2**96
    m = market(big, WBTC, USDC)
    view = fast.prepare(m)
    acct = account({big: 10**10}, {USDC: 10**6 * E6})
    assert view.reserves[0] is None and fast.try_fast_totals(view, acct) is None
    assert drop_to_liquidation_bps(m, acct, view) == _drop_to_liquidation_bps_reference(m, acct) is not None


# ------------------------------------------------------------------ position


def reference_position(m, acct, protocol="aave_v3"):
    """position_from as it was before the fast path: every number from the exact math."""
    data = account_data(m, acct)
    hf = None if data.total_debt_base == 0 else data.health_factor_wad
    used = [r for i in reserve_ids_in_use(acct.user_config) if (r := _reserve(m, i))]
    price_keys = {r.asset.lower() for r in used}
    if acct.emode != 0 and used:
        source = m.emode_categories[acct.emode].price_source
        if not _is_zero_address(source) and any(r.config.emode_category == acct.emode for r in used):
            price_keys.add(source.lower())
    main = main_collateral(m, acct)
    return Position(
        protocol=protocol, market=m.pool, account=acct.account, block=m.block,
        collateral_base=data.total_collateral_base, debt_base=data.total_debt_base, health_factor_wad=hf,
        liquidation_threshold_bps=data.liquidation_threshold_bps, status=classify(hf),
        reliable=not (price_keys & {a.lower() for a in m.unreliable_assets}),
        main_collateral=main.symbol if main else None, drop_to_liquidation_bps=None,
        assets=frozenset(r.asset for r in used),
    )  # fmt: skip


@EXAMPLES
@given(st.data())
def test_position_from_is_the_reference_position(data):
    m = data.draw(markets())
    m = replace(m, unreliable_assets=frozenset(data.draw(st.lists(
        st.sampled_from([r.asset.upper().replace("0X", "0x") for r in m.reserves] + [address(0xE1)]), max_size=2))))
    acct = data.draw(accounts(m))
    assume(not isinstance(exact(m, acct), type))
    view = fast.prepare(m)
    want = reference_position(m, acct)
    assert position_from(m, acct, with_drop=False, view=view) == want
    assert position_from(m, acct, with_drop=False, view=view) == want  # memoized price inputs
    assert position_from(m, acct, view=view) == replace(
        want, drop_to_liquidation_bps=drop_to_liquidation_bps(m, acct, view))


def test_position_without_a_view_and_with_a_stale_one():
    m, acct = market(), account({WETH: 10 * E18}, {USDC: 15_000 * E6})
    other = fast.prepare(market(emode=(ETH_EMODE,)))
    assert position_from(m, acct) == position_from(m, acct, view=other) == position_from(m, acct, view=fast.prepare(m))
    assert position_from(m, acct).drop_to_liquidation_bps == 910
