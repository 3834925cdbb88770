"""plan_top_up / apply_supply / apply_repay: the smallest supply or repay that restores a target HF."""

from dataclasses import replace

import pytest
from hypothesis import given, settings, strategies as st

from keeper.protocols.aave_v3.math import is_borrowing, is_using_as_collateral
from keeper.protocols.aave_v3.topup import (
    TopUpInvalid,
    TopUpPlan,
    apply_repay,
    apply_supply,
    auto_collateral,
    hf_after,
    plan_top_up,
)
from keeper.protocols.aave_v3.health import account_data
from keeper.protocols.aave_v3.model import UserReserve
from keeper.units import RAY, SECONDS_PER_YEAR, UINT256_MAX, parse_fixed
from tests.unit.test_health_builders import (
    CRV, DAI, NOLT, T0, USDC, WBTC, WETH, WSTETH, account, market, reserve,
)  # fmt: skip

E18, E8, E6 = 10**18, 10**8, 10**6


def HF(text: str) -> int:  # "1.4" -> 1.4e18, exactly
    return parse_fixed(text, 18)


BIG = {r.asset: 10**40 for r in (WETH, WBTC, USDC, DAI, NOLT, CRV, WSTETH)}


def reaches(m, acct, action, asset, amount, target) -> bool:
    try:
        return hf_after(m, acct, action, asset, amount) >= target
    except TopUpInvalid:
        return False


def assert_minimal(m, acct, plan: TopUpPlan, target: int) -> None:
    assert plan.expected_hf_wad == hf_after(m, acct, plan.action, plan.asset, plan.amount)
    assert plan.expected_hf_wad >= target
    assert not reaches(m, acct, plan.action, plan.asset, plan.amount - 1, target)


def test_supply_and_repay_by_hand():
    # 10 WETH at 2000, 15000 USDC debt: HF 1.1
    m, acct = market(), account({WETH: 10 * E18}, {USDC: 15_000 * E6})
    plan = plan_top_up(m, acct, HF("1.2"), [("supply", WETH.asset)], BIG)
    # 1.2 * 15000 / 0.825 = 21818.18 USD of WETH: 0.90909090909 WETH more (value floors at 1e-8 USD)
    assert plan == TopUpPlan("supply", WETH.asset, 909_090_909_090_000_000, HF("1.2"), False, 0)
    plan = plan_top_up(m, acct, HF("1.2"), [("repay", USDC.asset)], BIG)
    assert plan == TopUpPlan("repay", USDC.asset, 1_250 * E6, HF("1.2"), False, 0)  # 16500 / 1.2 = 13750
    assert_minimal(m, acct, plan, HF("1.2"))


def test_nothing_to_do_when_already_at_target_or_no_debt():
    m = market()
    assert plan_top_up(m, account({WETH: 10 * E18}, {USDC: 15_000 * E6}), HF("1.1"), [("supply", WETH.asset)], BIG) is None
    assert plan_top_up(m, account({WETH: E18}), HF("5"), [("supply", WETH.asset)], BIG) is None


def test_preference_order_and_partial_plans():
    m, acct = market(), account({WETH: 10 * E18}, {USDC: 15_000 * E6})
    target = HF("1.4")
    need_usdc = plan_top_up(m, acct, target, [("repay", USDC.asset)], BIG).amount
    need_weth = plan_top_up(m, acct, target, [("supply", WETH.asset)], BIG).amount
    both = [("repay", USDC.asset), ("supply", WETH.asset)]
    # the first preference when the wallet covers it
    assert plan_top_up(m, acct, target, both, {USDC.asset: need_usdc, WETH.asset: need_weth}).action == "repay"
    # the next one when it does not
    got = plan_top_up(m, acct, target, both, {USDC.asset: need_usdc - 1, WETH.asset: need_weth})
    assert (got.action, got.amount, got.partial) == ("supply", need_weth, False)
    # neither: the partial plan that gets closest, with its shortfall
    wallet = {USDC.asset.lower(): 1_000 * E6, WETH.asset.upper(): E18 // 10}
    got = plan_top_up(m, acct, target, both, wallet)
    assert (got.action, got.amount, got.partial, got.shortfall) == ("repay", 1_000 * E6, True, need_usdc - 1_000 * E6)
    assert got.expected_hf_wad == hf_after(m, acct, "repay", USDC.asset, 1_000 * E6) < target
    # empty wallet: nothing helps
    assert plan_top_up(m, acct, target, both, {}) is None


def test_a_frozen_reserve_cannot_be_supplied_but_can_be_repaid():
    weth = replace(WETH, config=replace(WETH.config, frozen=True))
    usdc = replace(USDC, config=replace(USDC.config, frozen=True))
    m = market(weth, WBTC, usdc)
    acct = account({weth: 10 * E18}, {usdc: 15_000 * E6})
    wallet = {weth.asset: 10**30, WBTC.asset: 10**30, usdc.asset: 10**30}
    got = plan_top_up(m, acct, HF("1.4"), [("supply", weth.asset), ("supply", WBTC.asset)], wallet)
    assert got.asset == WBTC.asset and not got.partial
    assert plan_top_up(m, acct, HF("1.4"), [("repay", usdc.asset)], wallet).action == "repay"


def test_repaying_everything_clears_the_borrowing_bit():
    m, acct = market(), account({WETH: 10 * E18}, {USDC: 15_000 * E6})
    after = apply_repay(m, acct, USDC.asset, 10**30)  # more than owed: Aave takes the debt
    assert not is_borrowing(after.user_config, USDC.id)
    assert account_data(m, after).health_factor_wad == UINT256_MAX
    assert [r.scaled_variable_debt for r in after.reserves if r.reserve_id == USDC.id] == [0]
    # a repay that cannot reach the target alone: partial, shortfall None (no amount suffices)
    acct = account({WETH: 10 * E18}, {USDC: 7_500 * E6, DAI: 7_500 * E18})
    got = plan_top_up(m, acct, HF("3"), [("repay", USDC.asset)], BIG)
    assert (got.amount, got.partial, got.shortfall) == (7_500 * E6, True, None)
    assert is_borrowing(apply_repay(m, acct, USDC.asset, 7_500 * E6 - 1).user_config, USDC.id)


def test_repay_keeps_the_bit_while_stable_debt_remains():
    m = market()
    acct = account({WETH: 10 * E18}, {USDC: 1_000 * E6}, stable={USDC: 5 * E6})
    after = apply_repay(m, acct, USDC.asset, 2_000 * E6)
    assert is_borrowing(after.user_config, USDC.id)
    assert account_data(m, after).total_debt_base == 5 * E8


def test_supply_and_repay_scale_by_the_normalized_indexes():
    year = SECONDS_PER_YEAR
    weth = replace(WETH, liquidity_index_ray=RAY, current_liquidity_rate_ray=RAY // 10)
    usdc = replace(USDC, variable_borrow_index_ray=2 * RAY)
    m = market(weth, WBTC, usdc, timestamp=T0 + year)
    acct = account({weth: E18}, {usdc: 500 * E6})
    s = apply_supply(m, acct, weth.asset, 11 * E18 // 10)  # income 1.1: 1 scaled
    assert [r.scaled_a_token for r in s.reserves if r.reserve_id == weth.id] == [2 * E18]
    r = apply_repay(m, acct, usdc.asset, 200 * E6)  # debt index 2: 100 scaled
    assert [x.scaled_variable_debt for x in r.reserves if x.reserve_id == usdc.id] == [400 * E6]


@pytest.mark.parametrize("case, error", [
    ("zero", "INVALID_AMOUNT"), ("frozen", "RESERVE_FROZEN"), ("paused", "RESERVE_PAUSED"),
    ("inactive", "RESERVE_INACTIVE"), ("dust", "INVALID_MINT_AMOUNT"),
])  # fmt: skip
def test_supply_reverts(case, error):
    flags = {"frozen": {"frozen": True}, "paused": {"paused": True}, "inactive": {"active": False}}
    weth = replace(WETH, config=replace(WETH.config, **flags.get(case, {})))
    if case == "dust":
        weth = replace(weth, liquidity_index_ray=3 * RAY)  # rayDiv(1, 3 RAY) rounds to 0
    m = market(weth, USDC)
    with pytest.raises(TopUpInvalid) as e:
        apply_supply(m, account({weth: E18}, {USDC: E6}), weth.asset, 0 if case == "zero" else 1)
    assert e.value.error == error


def test_repay_reverts_and_frozen_is_fine():
    frozen = replace(USDC, config=replace(USDC.config, frozen=True))
    m = market(WETH, WBTC, frozen)
    acct = account({WETH: E18}, {frozen: 100 * E6})
    assert apply_repay(m, acct, frozen.asset, E6)  # repaying a frozen reserve is allowed
    with pytest.raises(TopUpInvalid) as e:
        apply_repay(m, acct, WBTC.asset, 1)
    assert e.value.error == "NO_DEBT_OF_SELECTED_TYPE"
    with pytest.raises(TopUpInvalid) as e:
        apply_repay(m, account({WETH: E18}, stable={frozen: E6}), frozen.asset, 1)  # stable only
    assert e.value.error == "NO_DEBT_OF_SELECTED_TYPE"


def test_first_supply_collateral_rules():
    m = market()
    # no collateral yet: any LTV != 0 asset turns on
    assert auto_collateral(m, account(debt={USDC: 1}).user_config, WBTC)
    # LTV 0 (CRV has LT 4500 but LTV 0): never turned on automatically
    assert not auto_collateral(m, 0, CRV)
    acct = account({WETH: 10 * E18}, {USDC: 15_000 * E6})
    after = apply_supply(m, acct, CRV.asset, 10**24)
    assert not is_using_as_collateral(after.user_config, CRV.id)
    assert account_data(m, after) == account_data(m, acct)
    assert plan_top_up(m, acct, HF("1.4"), [("supply", CRV.asset)], BIG) is None
    # an isolated asset (debt ceiling) is not enabled by a supply
    iso = replace(WBTC, config=replace(WBTC.config, debt_ceiling=1_000_000))
    mi = market(WETH, iso, USDC, DAI)
    assert not auto_collateral(mi, acct.user_config, iso)
    # isolation mode (only collateral is isolated): nothing else turns on
    in_iso = account({iso: E8}, {USDC: 10_000 * E6})
    assert not auto_collateral(mi, in_iso.user_config, WETH)
    # two collaterals, one isolated: not isolation mode
    assert auto_collateral(mi, account({iso: 1, DAI: 1}).user_config, WETH)


def test_supply_does_not_enable_an_asset_the_user_turned_off():
    m = market()
    acct = account({WETH: 10 * E18, WBTC: E8}, {USDC: 50_000 * E6})
    off = replace(acct, user_config=acct.user_config & ~(1 << (2 * WBTC.id + 1)))
    assert not is_using_as_collateral(apply_supply(m, off, WBTC.asset, E8).user_config, WBTC.id)
    got = plan_top_up(m, off, HF("1.5"), [("supply", WBTC.asset), ("supply", WETH.asset)], BIG)
    assert got.asset == WETH.asset and not got.partial


def test_emode_supply_uses_the_category_lt():
    m = market()
    acct = account({WETH: 10 * E18}, {WSTETH: 7 * E18}, emode=1)  # 20000 * 0.93 / 16100 = 1.155
    plan = plan_top_up(m, acct, HF("1.3"), [("supply", WSTETH.asset)], BIG)
    assert_minimal(m, acct, plan, HF("1.3"))
    # 1.3 * 16100 = 20930 -> (20930 - 18600) / 0.93 / 2300 = 1.0893 wstETH
    assert abs(plan.amount - 1_089_294_062_646_000_000) < 10**10


# ------------------------------------------------------------------ properties

A = reserve(0, "A", 0, 1, 9_000, 9_000)  # 0 decimals, tiny prices: values move by a few units
B = reserve(1, "B", 0, 1, 500, 1_000)
C = reserve(2, "C", 0, 1, 0, 0)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=1, max_value=50), st.integers(min_value=1, max_value=8_999),
    st.integers(min_value=1, max_value=3_000), st.integers(min_value=1, max_value=3_000),
    st.integers(min_value=0, max_value=10**17), st.integers(min_value=0, max_value=400),
)  # fmt: skip
def test_supply_is_the_smallest_even_where_hf_is_not_monotone(price_a, lt_b, coll, debt, up, held_b):
    # supplying B (LT below A's 90%) lowers the floored average LT: HF can dip as B grows,
    # and a plain bisection can miss a smaller amount. Brute force over every smaller amount.
    a = replace(A, price_base=price_a)
    b = replace(B, config=replace(B.config, liquidation_threshold_bps=lt_b, ltv_bps=min(lt_b, 500)))
    m = market(a, b, C, emode=())
    acct = account({a: coll, **({b: held_b} if held_b else {})}, {C: debt})
    target = account_data(m, acct).health_factor_wad + up + 1
    plan = plan_top_up(m, acct, target, [("supply", b.asset)], {b.asset: 10**30})
    assert plan is not None and not plan.partial
    assert_minimal(m, acct, plan, target)
    if plan.amount <= 3_000:
        assert not any(reaches(m, acct, "supply", b.asset, x, target) for x in range(1, plan.amount))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=10**6),  # WETH collateral (milli)
    st.integers(min_value=1, max_value=10**6),  # WBTC collateral (milli)
    st.integers(min_value=1, max_value=10**9),  # USDC debt (units)
    st.integers(min_value=10**6, max_value=10**10),  # DAI debt (micro)
    st.integers(min_value=1, max_value=4),  # interest years
    st.sampled_from(["WETH", "WBTC", "USDC", "DAI"]),
    st.sampled_from(["supply", "repay"]),
    st.integers(min_value=10_100, max_value=30_000),  # target (bps of 1e18)
)
def test_plans_are_minimal_and_sufficient(c_weth, c_wbtc, d_usdc, d_dai, years, symbol, action, target_bps):
    weth = replace(WETH, liquidity_index_ray=RAY + RAY // 7, current_liquidity_rate_ray=RAY // 33,
                   last_update_timestamp=T0 - years * SECONDS_PER_YEAR)  # fmt: skip
    dai = replace(DAI, variable_borrow_index_ray=RAY + RAY // 3, current_variable_borrow_rate_ray=RAY // 9,
                  last_update_timestamp=T0 - years * SECONDS_PER_YEAR)  # fmt: skip
    m = market(weth, WBTC, USDC, dai, NOLT, CRV, WSTETH)
    by = {"WETH": weth, "WBTC": WBTC, "USDC": USDC, "DAI": dai}
    acct = account({weth: c_weth * E18 // 1000, WBTC: c_wbtc * E8 // 1000},
                   {USDC: d_usdc * E6, dai: d_dai * E18 // E6})  # fmt: skip
    target = target_bps * E18 // 10_000
    asset = by[symbol].asset
    plan = plan_top_up(m, acct, target, [(action, asset)], {asset: 10**40})
    if account_data(m, acct).health_factor_wad >= target:
        assert plan is None
        return
    if action == "repay" and symbol in ("WETH", "WBTC"):
        assert plan is None  # no debt in it
        return
    assert plan is not None
    if plan.partial:  # repaying all of one debt is not enough
        assert action == "repay" and plan.shortfall is None
        assert plan.expected_hf_wad < target
        return
    assert_minimal(m, acct, plan, target)
    # and a wallet one unit short gets a partial plan of exactly what it has
    short = plan_top_up(m, acct, target, [(action, asset)], {asset: plan.amount - 1})
    if plan.amount > 1 and short is not None:
        assert (short.amount, short.partial, short.shortfall) == (plan.amount - 1, True, 1)


def test_rows_without_bits_are_kept_and_ignored():
    m = market()
    acct = account({WETH: 10 * E18}, {USDC: 15_000 * E6})
    after = apply_supply(m, acct, CRV.asset, E18)  # LTV 0: no bit, the balance is still held
    assert UserReserve(CRV.id, E18, 0, 0) in after.reserves
    assert account_data(m, after).health_factor_wad == account_data(m, acct).health_factor_wad


def test_unknown_action_is_an_error():
    m, acct = market(), account({WETH: E18}, {USDC: 1_500 * E6})
    with pytest.raises(ValueError):
        plan_top_up(m, acct, HF("2"), [("borrow", USDC.asset)], BIG)
