"""plan_comet_top_up: the smallest Comet supply of base (a repay) or of a collateral that
restores a target hf, by hand (indexes 1 and not), and as Hypothesis properties (minimal:
amount - 1 misses). On chain: tests/integration/test_topup_others_onchain.py."""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.model import TopUpPlan
from keeper.protocols.compound_v3.math import (
    BASE_INDEX_SCALE,
    CometRevert,
    borrow_balance,
    hf_wad,
    present_value,
    principal_value,
)  # fmt: skip
from keeper.protocols.compound_v3.topup import (
    apply_repay,
    apply_supply,
    hf_after,
    plan_comet_top_up,
)
from keeper.units import UINT256_MAX, WAD
from tests.unit.test_comet_math import USDC, WBTC, WETH, acct, market

E18, E8, E6 = 10**18, 10**8, 10**6
HF14 = 14 * 10**17
BIG = {USDC: 10**40, WETH: 10**40, WBTC: 10**40}
REPAY, SUPPLY_WETH, SUPPLY_WBTC = ("repay", USDC), ("supply", WETH), ("supply", WBTC)


def reaches(m, a, action, asset, amount, target) -> bool:
    try:
        return hf_after(m, a, action, asset, amount) >= target
    except (CometRevert, OverflowError):
        return False


def assert_minimal(m, a, plan: TopUpPlan, target: int) -> None:
    assert plan.expected_hf_wad == hf_after(m, a, plan.action, plan.asset, plan.amount) >= target
    assert not reaches(m, a, plan.action, plan.asset, plan.amount - 1, target)


def test_repay_and_supply_by_hand():
    # 10 WETH at $2000 (liquidate CF 0.895): 17900 of liquidation value, 15000 USDC debt
    m, a = market(), acct(-15_000 * E6, weth=10 * E18)
    assert hf_wad(m, a) == 17_900 * WAD // 15_000
    # debt value (1e8 USD) <= floor(17900e8 * 1e18 / 1.4e18) = 1278571428571: 12785.714285 USDC
    plan = plan_comet_top_up(m, a, HF14, [REPAY], BIG)
    assert plan == TopUpPlan("repay", USDC, 2_214_285_715, 17_900 * E8 * WAD // 1_278_571_428_500, False, 0)
    assert apply_repay(m, a, plan.amount).principal == -12_785_714_285
    assert_minimal(m, a, plan, HF14)
    # liquidation value 21000e8: 21000 / 0.895 = 23463.68715084 USD = 11.73184357542 WETH
    plan = plan_comet_top_up(m, a, HF14, [SUPPLY_WETH], BIG)
    assert plan == TopUpPlan("supply", WETH, 1_731_843_575_420_000_000, HF14, False, 0)
    assert_minimal(m, a, plan, HF14)
    # WBTC is not in yet: supplying it sets its assetsIn bit; 3100 / 0.77 / 60000 WBTC
    plan = plan_comet_top_up(m, a, HF14, [SUPPLY_WBTC], BIG)
    q = -(-3_100 * E8 * E18 // (77 * 10**16))  # value (1e8 USD) of WBTC needed, rounded up
    assert plan.amount == -(-q * E8 // (60_000 * E8))
    assert_minimal(m, a, plan, HF14)
    assert apply_supply(m, a, WBTC, plan.amount).assets_in == 0b11


def test_indexes_and_rounding():
    # borrow index 1.05, supply index 1.02: principal rounds up for a borrow
    m = market(supply_index=102 * 10**13, borrow_index=105 * 10**13)
    a = acct(-15_000 * E6, weth=10 * E18)
    assert borrow_balance(m, a) == 15_750 * E6
    plan = plan_comet_top_up(m, a, HF14, [REPAY], BIG)
    assert_minimal(m, a, plan, HF14)
    after = apply_repay(m, a, plan.amount)
    assert after.principal == principal_value(m, present_value(m, a.principal) + plan.amount)
    # repaying all of it leaves principal 0, no debt: hf reported as UINT256_MAX
    assert apply_repay(m, a, 15_750 * E6).principal == 0
    assert hf_after(m, a, "repay", USDC, 15_750 * E6) == UINT256_MAX
    assert apply_repay(m, a, UINT256_MAX).principal == 0  # supply(max) repays borrowBalanceOf
    # more than owed becomes a supply (never planned: a repay is capped at the debt)
    assert apply_repay(m, a, 15_751 * E6).principal == 1_000 * E6 // 1_020


def test_nothing_to_do_skips_and_errors():
    m, a = market(), acct(-15_000 * E6, weth=10 * E18)
    assert plan_comet_top_up(m, a, 11 * 10**17, [REPAY], BIG) is None  # 1.1933 >= 1.1
    assert plan_comet_top_up(m, acct(0, weth=E18), HF14, [REPAY], BIG) is None
    assert plan_comet_top_up(m, acct(5 * E6, weth=E18), HF14, [REPAY], BIG) is None
    # base is not collateral, WETH is not the base, a foreign token is neither
    assert plan_comet_top_up(m, a, HF14, [("supply", USDC), ("repay", WETH),
                                          ("supply", "0x" + "99" * 20)], BIG) is None
    with pytest.raises(ValueError):
        plan_comet_top_up(m, a, HF14, [("withdraw", USDC)], BIG)
    with pytest.raises(ValueError):
        plan_comet_top_up(m, a, 0, [REPAY], BIG)
    with pytest.raises(CometRevert):
        apply_supply(m, a, USDC, 1)
    with pytest.raises(OverflowError):
        apply_supply(m, a, WETH, 2**128)
    # an unreliable price the hf uses: never acted on; an unreliable asset is not supplied
    assert plan_comet_top_up(replace(m, unreliable_assets=frozenset({WETH})), a, HF14,
                             [REPAY], BIG) is None
    bad_wbtc = replace(m, unreliable_assets=frozenset({WBTC}))
    assert plan_comet_top_up(bad_wbtc, a, HF14, [SUPPLY_WBTC], BIG) is None
    assert plan_comet_top_up(bad_wbtc, a, HF14, [SUPPLY_WBTC, REPAY], BIG).action == "repay"


def test_preference_order_and_partial_plans():
    m, a = market(), acct(-15_000 * E6, weth=10 * E18)
    assert plan_comet_top_up(m, a, HF14, [SUPPLY_WETH, REPAY], BIG).action == "supply"
    wallet = {USDC: 10**12, WETH: E18}
    assert plan_comet_top_up(m, a, HF14, [SUPPLY_WETH, REPAY], wallet).action == "repay"
    wallet = {USDC: 1_000 * E6, WETH: E18 // 10}
    plan = plan_comet_top_up(m, a, HF14, [SUPPLY_WETH, REPAY], wallet)
    assert plan == TopUpPlan("repay", USDC, 1_000 * E6, hf_after(m, a, "repay", USDC, 1_000 * E6),
                             True, 2_214_285_715 - 1_000 * E6)
    plan = plan_comet_top_up(m, a, HF14, [SUPPLY_WETH], wallet)
    assert plan == TopUpPlan("supply", WETH, E18 // 10, hf_after(m, a, "supply", WETH, E18 // 10),
                             True, 1_731_843_575_420_000_000 - E18 // 10)
    assert plan_comet_top_up(m, a, HF14, [SUPPLY_WETH, REPAY], {}) is None


def test_an_asset_whose_bit_is_off_does_not_count():
    # a balance with its assetsIn bit off (inconsistent, but Comet only sets it on 0 -> x)
    m = market()
    a = replace(acct(-15_000 * E6, weth=10 * E18, wbtc=E8), assets_in=0b01)
    assert plan_comet_top_up(m, a, HF14, [SUPPLY_WBTC], BIG) is None
    assert apply_supply(m, a, WBTC, 1).assets_in == 0b01


# ------------------------------------------------------------------ properties


@st.composite
def cases(draw):
    m = market(weth_e8=draw(st.integers(1, 10**13)), usdc_e8=draw(st.integers(9 * 10**7, 11 * 10**7)),
               wbtc_e8=draw(st.integers(1, 10**14)),
               supply_index=draw(st.integers(BASE_INDEX_SCALE, 3 * BASE_INDEX_SCALE)),
               borrow_index=draw(st.integers(BASE_INDEX_SCALE, 3 * BASE_INDEX_SCALE)))
    a = acct(-draw(st.integers(1, 10**14)), weth=draw(st.integers(0, 10**24)),
             wbtc=draw(st.integers(0, 10**12)))
    return m, a, draw(st.integers(WAD, 3 * WAD))


@settings(max_examples=300, deadline=None)
@given(cases())
def test_plans_are_minimal_and_exact(case):
    m, a, target = case
    hf = hf_wad(m, a)
    for action in (REPAY, SUPPLY_WETH, SUPPLY_WBTC):
        plan = plan_comet_top_up(m, a, target, [action], BIG)
        if hf is None or hf >= target:
            assert plan is None
        elif plan is not None and plan.partial:  # a uint128 of collateral is not enough
            assert action != REPAY and plan.shortfall is None
        elif plan is not None:
            assert plan.asset == action[1]
            assert_minimal(m, a, plan, target)
    if hf is not None and hf < target:  # a repay always reaches it: at worst the full debt
        assert plan_comet_top_up(m, a, target, [REPAY], BIG) is not None
