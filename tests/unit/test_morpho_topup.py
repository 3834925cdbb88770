"""plan_morpho_top_up: the smallest Morpho.repay / supplyCollateral that restores a target hf,
by hand and as Hypothesis properties (minimal: amount - 1 misses; the repay's debt falls
monotonically, which the bisection relies on). On chain: tests/integration/test_topup_others_onchain.py."""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.model import TopUpPlan
from keeper.protocols.morpho_blue.math import (
    UINT128_MAX,
    UINT256_MAX,
    WAD,
    health,
    to_assets_up,
    to_shares_down,
)
from keeper.protocols.morpho_blue.topup import (
    MorphoTopUpRevert,
    apply_repay,
    apply_supply,
    full_repay_assets,
    hf_after,
    plan_morpho_top_up,
    repay_args,
)  # fmt: skip
from tests.unit.test_morpho_math import E6, USDC, WETH, mkt, pos

HF14 = 14 * 10**17
BIG = {USDC: 10**40, WETH: 10**40}
REPAY, SUPPLY = ("repay", USDC), ("supply", WETH)


def reaches(m, p, action, amount, target) -> bool:
    try:
        return hf_after(m, p, action, amount) >= target
    except MorphoTopUpRevert:
        return False


def assert_minimal(m, p, plan: TopUpPlan, target: int) -> None:
    assert plan.expected_hf_wad == hf_after(m, p, plan.action, plan.amount) >= target
    assert not reaches(m, p, plan.action, plan.amount - 1, target)


def test_repay_and_supply_by_hand():
    # 1 WETH at $1500, lltv 86%: maxBorrow 1290 USDC against 1000 USDC of debt: hf 1.29
    m, p = mkt(price=1_500 * 10**24), pos()
    assert health(m, p)[2] == 129 * 10**16
    # shares at exactly 1e6 per asset: debt after = 1000 - x <= floor(1290 / 1.4) = 921.428571
    plan = plan_morpho_top_up(m, p, HF14, [REPAY], BIG)
    assert plan == TopUpPlan("repay", USDC, 78_571_429, 1290 * E6 * WAD // 921_428_571, False, 0)
    assert_minimal(m, p, plan, HF14)
    # 1400 USDC of maxBorrow: 1627.906977 USDC of collateral value = 1.085271318 WETH at $1500
    plan = plan_morpho_top_up(m, p, HF14, [SUPPLY], BIG)
    assert plan == TopUpPlan("supply", WETH, 85_271_318 * 10**9, HF14, False, 0)
    assert_minimal(m, p, plan, HF14)


def test_nothing_to_do_skips_and_errors():
    m, p = mkt(price=1_500 * 10**24), pos()
    assert plan_morpho_top_up(m, p, 12 * 10**17, [REPAY], BIG) is None  # 1.29 >= 1.2
    assert plan_morpho_top_up(m, replace(p, borrow_shares=0), HF14, [REPAY], BIG) is None
    assert plan_morpho_top_up(replace(m, unreliable=True), p, HF14, [REPAY], BIG) is None
    # the loan token is not collateral here, nor the collateral a loan; others are foreign
    assert plan_morpho_top_up(m, p, HF14, [("supply", USDC), ("repay", WETH),
                                           ("repay", "0x" + "99" * 20)], BIG) is None
    assert plan_morpho_top_up(m, p, HF14, [("supply", WETH.upper().replace("0X", "0x"))],
                              BIG).action == "supply"  # addresses are case-insensitive
    with pytest.raises(ValueError):
        plan_morpho_top_up(m, p, HF14, [("borrow", USDC)], BIG)
    with pytest.raises(ValueError):
        plan_morpho_top_up(m, p, 0, [REPAY], BIG)
    with pytest.raises(MorphoTopUpRevert):
        apply_supply(p, 0)
    with pytest.raises(MorphoTopUpRevert):
        apply_supply(replace(p, collateral=UINT128_MAX), 1)


def test_preference_order_and_partial_plans():
    m, p = mkt(price=1_500 * 10**24), pos()
    # both affordable: the first one wins even when the other is cheaper in dollars
    assert plan_morpho_top_up(m, p, HF14, [SUPPLY, REPAY], BIG).action == "supply"
    # the supply is short, the repay is affordable: the repay
    wallet = {USDC: 10**12, WETH: 10**15}
    assert plan_morpho_top_up(m, p, HF14, [SUPPLY, REPAY], wallet).action == "repay"
    # both short: the partial plan with the higher hf, whole balance, and its shortfall
    wallet = {USDC: 50 * E6, WETH: 10**16}
    plan = plan_morpho_top_up(m, p, HF14, [SUPPLY, REPAY], wallet)
    repay_hf = hf_after(m, p, "repay", 50 * E6)
    supply_hf = hf_after(m, p, "supply", 10**16)
    assert repay_hf > supply_hf
    assert plan == TopUpPlan("repay", USDC, 50 * E6, repay_hf, True, 78_571_429 - 50 * E6)
    plan = plan_morpho_top_up(m, p, HF14, [SUPPLY], wallet)
    assert plan == TopUpPlan("supply", WETH, 10**16, supply_hf, True, 85_271_318 * 10**9 - 10**16)
    assert plan_morpho_top_up(m, p, HF14, [SUPPLY, REPAY], {}) is None


def test_only_a_full_repay_reaches_it_and_goes_by_shares():
    # no collateral: only repaying every share helps; an odd share price makes the full
    # debt, repaid by assets, convert to more shares than the position owes (a revert)
    m = mkt(tsa=10 * E6, tba=3, tbs=2 * E6, price=1_500 * 10**24)
    p = replace(pos(collateral=0), borrow_shares=E6)
    full = full_repay_assets(m, p)
    assert full == to_assets_up(E6, 3, 2 * E6) == 2
    assert to_shares_down(full, 3, 2 * E6) > E6  # by assets, Morpho would underflow
    assert repay_args(m, p, full) == (0, E6) and repay_args(m, p, 1) == (1, 0)
    after_m, after_p = apply_repay(m, p, full)
    assert after_p.borrow_shares == 0 and after_m.total_borrow_shares == E6
    assert after_m.total_borrow_assets == 1
    plan = plan_morpho_top_up(m, p, HF14, [SUPPLY, REPAY], {USDC: 10**40})
    assert plan == TopUpPlan("repay", USDC, 2, UINT256_MAX, False, 0)
    # short of it: repaying 1 leaves debt, hf stays 0, no partial plan is worth proposing
    assert plan_morpho_top_up(m, p, HF14, [REPAY], {USDC: 1}) is None
    with pytest.raises(MorphoTopUpRevert):
        apply_repay(m, p, 0)


def test_collateral_that_cannot_help():
    m, p = mkt(price=1_500 * 10**24), pos()
    zero_lltv = replace(m, params=replace(m.params, lltv=0))
    assert plan_morpho_top_up(zero_lltv, p, HF14, [SUPPLY], BIG) is None
    # even a uint128 of collateral is not enough: the partial plan (it raises the hf from
    # 0) has no known shortfall (None)
    tiny = replace(m, price=4 * E6)
    assert health(tiny, p)[2] == 0
    plan = plan_morpho_top_up(tiny, p, HF14, [SUPPLY], {WETH: 10**38})
    assert plan == TopUpPlan("supply", WETH, 10**38, hf_after(tiny, p, "supply", 10**38), True, None)
    assert 0 < plan.expected_hf_wad < HF14
    assert hf_after(tiny, p, "supply", UINT128_MAX - p.collateral) < HF14


# ------------------------------------------------------------------ properties


@st.composite
def cases(draw):
    tba = draw(st.integers(1, 10**15))
    tbs = draw(st.one_of(st.just(tba * E6), st.integers(1, 10**22)))
    borrow_shares = draw(st.integers(1, tbs))
    price = draw(st.integers(1, 10**40))
    m = mkt(tsa=tba * 2, tba=tba, tbs=tbs, price=price,
            params=replace(mkt().params, lltv=draw(st.integers(10**17, 98 * 10**16))))
    p = replace(pos(collateral=draw(st.integers(0, 10**30))), borrow_shares=borrow_shares)
    return m, p, draw(st.integers(WAD, 3 * WAD))


@settings(max_examples=300, deadline=None)
@given(cases())
def test_plans_are_minimal_and_exact(case):
    m, p, target = case
    hf = health(m, p)[2]
    for action in ("repay", "supply"):
        plan = plan_morpho_top_up(m, p, target, [(action, USDC if action == "repay" else WETH)], BIG)
        if hf >= target:
            assert plan is None
        elif plan is not None and plan.partial:  # a uint128 of collateral is not enough
            assert action == "supply" and plan.shortfall is None
            assert hf_after(m, p, action, UINT128_MAX - p.collateral) < target
        elif plan is not None:
            assert_minimal(m, p, plan, target)
    if hf < target:  # a repay always reaches it: at worst the full debt
        assert plan_morpho_top_up(m, p, target, [REPAY], BIG) is not None


@settings(max_examples=200, deadline=None)
@given(cases(), st.data())
def test_debt_left_falls_as_the_repay_grows(case, data):
    m, p, _ = case
    full = full_repay_assets(m, p)
    a = data.draw(st.integers(1, full))
    b = data.draw(st.integers(a, full))
    debt = [health(*apply_repay(m, p, x))[1] for x in (a, b)]
    assert debt[0] >= debt[1]
    if b < full:  # every amount below the full debt is a valid repay by assets
        assert to_shares_down(b, m.total_borrow_assets, m.total_borrow_shares) <= p.borrow_shares
    assert health(*apply_repay(m, p, full))[1] == 0
