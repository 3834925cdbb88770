"""Compound III (Comet) math: hand-computed values from Comet.sol's formulas, Solidity's signed
truncation (negative principals), and properties (liquidatable is monotone in price; present
and principal values round in the protocol's favour)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.protocols.compound_v3.math import (
    BASE_INDEX_SCALE,
    CometAccount,
    CometAssetInfo,
    CometMarket,
    CometRates,
    CometRevert,
    _totals,
    absorb_outcome,
    accrue,
    borrow_balance,
    drop_to_liquidation_bps,
    hf_wad,
    is_borrow_collateralized,
    is_liquidatable,
    liquidation_margin,
    position_from,
    present_value,
    principal_value,
    principal_value_borrow,
    principal_value_supply,
    quote_collateral,
    rates_at,
    shock,
    signed_mul_price,
    supply_balance,
    utilization,
)
from keeper.model import Status
from keeper.units import WAD

E18 = 10**18
USDC = "0x00000000000000000000000000000000000000c1"
WETH = "0x00000000000000000000000000000000000000e1"
WBTC = "0x00000000000000000000000000000000000000b1"
ALICE = "0x00000000000000000000000000000000000000a1"
RATES = CometRates(  # the devnet's per-year values / 31,536,000, floored as Comet's constructor does
    supply_kink=8 * E18 // 10, supply_slope_low=325 * 10**14 // 31_536_000,
    supply_slope_high=4 * E18 // 10 // 31_536_000, supply_base=0,
    borrow_kink=8 * E18 // 10, borrow_slope_low=35 * 10**15 // 31_536_000,
    borrow_slope_high=25 * E18 // 100 // 31_536_000, borrow_base=15 * 10**15 // 31_536_000,
)


def market(weth_e8: int = 2_000 * 10**8, usdc_e8: int = 10**8, wbtc_e8: int = 60_000 * 10**8,
           supply_index: int = BASE_INDEX_SCALE, borrow_index: int = BASE_INDEX_SCALE,
           total_supply: int = 2_000_000 * 10**6, total_borrow: int = 1_000_000 * 10**6) -> CometMarket:
    return CometMarket(
        comet="0x00000000000000000000000000000000000000cc", block=1, timestamp=1_000,
        base_token=USDC, base_scale=10**6, base_supply_index=supply_index,
        base_borrow_index=borrow_index, total_supply_base=total_supply,
        total_borrow_base=total_borrow, last_accrual_time=1_000, rates=RATES,
        assets=(CometAssetInfo(0, WETH, "0xfeed01", 10**18, 825 * 10**15, 895 * 10**15, 95 * 10**16, 0, "WETH"),
                CometAssetInfo(1, WBTC, "0xfeed02", 10**8, 70 * 10**16, 77 * 10**16, 95 * 10**16, 0, "WBTC")),
        prices_e8={USDC: usdc_e8, WETH: weth_e8, WBTC: wbtc_e8},
        store_front_price_factor=E18 // 2, target_reserves=5_000_000 * 10**6, base_symbol="USDC",
    )


def acct(principal: int, weth: int = 0, wbtc: int = 0) -> CometAccount:
    coll = {k: v for k, v in ((WETH, weth), (WBTC, wbtc)) if v}
    return CometAccount(ALICE, principal, coll)


# ------------------------------------------------------------------ present / principal


def test_present_and_principal_values_round_as_comet():
    m = market(supply_index=105 * 10**13, borrow_index=105 * 10**13)  # both indexes 1.05
    assert present_value(m, 100) == 105 and present_value(m, -100) == -105
    # principalValueSupply rounds down, principalValueBorrow rounds up
    assert principal_value_supply(m.base_supply_index, 104) == 99  # 104 / 1.05 = 99.04
    assert principal_value_borrow(m.base_borrow_index, 104) == 100
    assert principal_value(m, 104) == 99 and principal_value(m, -104) == -100
    assert principal_value(m, 0) == 0


def test_negative_principal_of_one_wei_and_tiny_debts():
    m = market(borrow_index=3 * BASE_INDEX_SCALE)
    assert present_value(m, -1) == -3
    assert principal_value(m, -1) == -1  # ceil(1/3): a wei of debt never rounds to zero
    assert principal_value(m, -2) == -1  # ceil(2/3)
    assert principal_value(m, -4) == -2  # ceil(4/3)


def test_signed_mul_price_truncates_toward_zero():
    assert signed_mul_price(-1, 99_999_999, 10**8) == 0  # -0.99999999 -> 0, Python's // gives -1
    assert (-1 * 99_999_999) // 10**8 == -1
    assert signed_mul_price(-150, 10**8 + 1, 10**6) == -15_000  # -15000.00015
    assert signed_mul_price(150, 10**8 + 1, 10**6) == 15_000


def test_truncation_toward_zero_decides_a_boundary_position():
    """Liquidity = 179000000009 - trunc(179000000009.99997) = 0: safe. With Python's floor
    the debt would be 179000000010 and the account liquidatable."""
    m = market(usdc_e8=99_999_999)
    a = acct(-1_790_000_018, weth=1_000_000_000_055_000_000)
    assert liquidation_margin(m, a) == 0
    assert not is_liquidatable(m, a)
    assert hf_wad(m, a) == WAD  # exactly 1.0: not below
    assert (-1_790_000_018 * 99_999_999) // 10**6 == -179_000_000_010  # what floor would say
    assert is_liquidatable(m, replace(a, principal=a.principal - 1))


# ------------------------------------------------------------------ health, hand-computed


def test_is_liquidatable_at_the_edge():
    m = market()
    # 1 WETH at $2000: value 2000e8, x 0.895 = 179_000_000_000; debt 1790 USDC = 179_000_000_000
    at_edge = acct(-1_790_000_000, weth=E18)
    assert liquidation_margin(m, at_edge) == 0 and not is_liquidatable(m, at_edge)
    assert hf_wad(m, at_edge) == WAD
    over = acct(-1_790_000_001, weth=E18)
    assert liquidation_margin(m, over) == -100 and is_liquidatable(m, over)
    assert hf_wad(m, over) == 179_000_000_000 * WAD // 179_000_000_100
    # borrowCF 0.825: 1650 USDC is the most 1 WETH backs
    assert is_borrow_collateralized(m, acct(-1_650_000_000, weth=E18))
    assert not is_borrow_collateralized(m, acct(-1_650_000_001, weth=E18))


def test_no_borrow_is_never_liquidatable_and_has_no_health_factor():
    m = market()
    for a in (acct(0), acct(5 * 10**6), acct(0, weth=E18)):
        assert not is_liquidatable(m, a) and is_borrow_collateralized(m, a)
        assert hf_wad(m, a) is None
        assert position_from(m, a).status == Status.SAFE


def test_assets_in_decides_which_collateral_counts():
    m = market()
    a = CometAccount(ALICE, -1_790_000_001, {WETH: E18, WBTC: 10**8}, assets_in=0b01)  # WBTC bit off
    assert is_liquidatable(m, a)
    assert not is_liquidatable(m, replace(a, assets_in=0b11))
    assert not is_liquidatable(m, replace(a, assets_in=None))  # derived from the balances


def test_two_collaterals_and_the_position():
    m = market()
    a = acct(-50_000 * 10**6, weth=10 * E18, wbtc=5 * 10**7)  # $20,000 WETH + $30,000 WBTC
    # 20000e8 * 0.895 + 30000e8 * 0.77 = 17900e8 + 23100e8 = 41000e8 vs debt 50000e8
    assert liquidation_margin(m, a) == -9_000 * 10**8
    p = position_from(m, a)
    assert (p.protocol, p.collateral_base, p.debt_base) == ("compound_v3", 50_000 * 10**8, 50_000 * 10**8)
    assert p.health_factor_wad == 41 * WAD // 50 and p.status == Status.LIQUIDATABLE
    assert p.liquidation_threshold_bps == 8_200 and p.main_collateral == "WBTC"
    assert p.drop_to_liquidation_bps == 0 and p.reliable
    assert p.assets == frozenset({USDC, WETH, WBTC})


def test_a_bad_price_reverts_the_exact_view_and_makes_the_position_unreliable():
    m = market(weth_e8=0)
    a = acct(-1_000 * 10**6, weth=E18)
    with pytest.raises(CometRevert, match="BadPrice"):
        is_liquidatable(m, a)
    p = position_from(m, a)
    assert not p.reliable and p.collateral_base == 0 and p.drop_to_liquidation_bps is None


# ------------------------------------------------------------------ interest


def test_rates_and_one_day_of_accrual():
    m = market()  # utilization 50%, below the 80% kink
    assert utilization(m) == E18 // 2
    supply, borrow = rates_at(m, E18 // 2)
    assert borrow == 475_646_879 + 1_109_842_719 // 2  # base + slopeLow * 0.5 = 1_030_568_238
    assert supply == 1_030_568_239 * (E18 // 2) // E18 == 515_284_119  # slopeLow * 0.5, floored
    later = accrue(m, m.timestamp + 86_400)
    assert later.base_borrow_index == BASE_INDEX_SCALE + BASE_INDEX_SCALE * 1_030_568_238 * 86_400 // E18
    assert later.base_borrow_index == 1_000_089_041_095_763
    assert later.base_supply_index == BASE_INDEX_SCALE + BASE_INDEX_SCALE * 515_284_119 * 86_400 // E18
    assert later.last_accrual_time == later.timestamp == m.timestamp + 86_400
    a = acct(-1_000 * 10**6)
    assert borrow_balance(later, a) == 1_000 * 10**6 * 1_000_089_041_095_763 // BASE_INDEX_SCALE
    assert supply_balance(later, acct(10**6)) == 10**6 * later.base_supply_index // BASE_INDEX_SCALE
    assert accrue(later, later.timestamp) == later
    with pytest.raises(ValueError):
        accrue(later, m.timestamp)


def test_above_the_kink_the_high_slope_applies():
    m = market(total_supply=1_000 * 10**6, total_borrow=900 * 10**6)
    u = utilization(m)
    assert u == 9 * E18 // 10
    _, borrow = rates_at(m, u)
    kink = 8 * E18 // 10
    assert borrow == RATES.borrow_base + RATES.borrow_slope_low * kink // E18 \
        + RATES.borrow_slope_high * (u - kink) // E18


# ------------------------------------------------------------------ liquidation


def test_quote_collateral_hand_computed():
    m = market()
    # discount = 0.5 * (1 - 0.95) = 0.025: WETH at 2000 * 0.975 = 1950 USDC
    assert quote_collateral(m, WETH, 1_950 * 10**6) == E18
    assert quote_collateral(m, WBTC, 58_500 * 10**6) == 10**8  # 60000 * 0.975
    assert quote_collateral(market(usdc_e8=99_990_000), WETH, 1_950 * 10**6) == \
        99_990_000 * 1_950 * 10**6 * E18 // (1_950 * 10**8) // 10**6
    with pytest.raises(CometRevert, match="BadAsset"):
        quote_collateral(m, ALICE, 1)


def test_absorb_outcome_hand_computed():
    m = market()
    a = acct(-1_800 * 10**6, weth=E18)  # 179_000e6 USD-e8 liquidation value < 180_000e6 debt
    out = absorb_outcome(m, a)
    assert out.seized == ((WETH, E18, 2_000 * 10**8),)
    # deltaValue = 2000e8 * 0.95 = 1900e8 -> 1900 USDC; the account keeps 100 USDC as a supply
    assert (out.old_balance, out.new_balance, out.new_principal) == (-1_800 * 10**6, 100 * 10**6, 100 * 10**6)
    assert (out.base_paid_out, out.usd_value) == (1_900 * 10**6, 1_900 * 10**8)
    assert out.market_after.total_borrow_base == m.total_borrow_base - 1_800 * 10**6
    assert out.market_after.total_supply_base == m.total_supply_base + 100 * 10**6
    under = absorb_outcome(market(weth_e8=1_000 * 10**8), a)  # collateral covers half: reserves pay
    assert under.new_balance == 0 and under.base_paid_out == 1_800 * 10**6
    with pytest.raises(CometRevert, match="NotLiquidatable"):
        absorb_outcome(m, acct(-1_000 * 10**6, weth=E18))


def drop_by_search(market: CometMarket, acct: CometAccount, asset: str | None = None) -> int | None:
    """The reference: the drop by bisection on the exact math (liquidity never falls as a
    collateral price rises, nor as the base price falls)."""
    if acct.principal >= 0:
        return None

    def liquidatable(m: CometMarket) -> bool:  # a price shocked to 0 is worthless, not a revert
        t = _totals(m, acct, strict=False)
        return t.liquidation_value < t.debt_value

    if liquidatable(market):
        return 0
    if asset is None:
        main = _totals(market, acct, strict=False).main
        if main is None:
            return None
        asset = main.asset
    if not liquidatable(shock(market, {asset: -10_000})):
        return None
    lo, hi = 0, 10_000  # lo: safe, hi: liquidatable
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if liquidatable(shock(market, {asset: -mid})):
            hi = mid
        else:
            lo = mid
    return hi


@given(st.integers(-(10**13), -1), st.integers(0, 10**20), st.integers(0, 10**9), st.integers(1, 10**12),
       st.integers(1, 10**14), st.integers(1, 10**9), st.sampled_from([None, WETH, WBTC, USDC]))
def test_drop_in_closed_form_equals_the_bisection(principal, weth, wbtc, weth_e8, wbtc_e8, usdc_e8, asset):
    m = market(weth_e8=weth_e8, wbtc_e8=wbtc_e8, usdc_e8=usdc_e8)
    a = CometAccount("0x" + "ab" * 20, principal, {k: v for k, v in ((WETH, weth), (WBTC, wbtc)) if v})
    drop = drop_to_liquidation_bps(m, a, asset)
    assert drop == drop_by_search(m, a, asset)
    if drop not in (None, 0) and asset != USDC:  # the edge itself: one bps less leaves it safe
        moved = asset or _totals(m, a, strict=False).main.asset

        def under(bps: int) -> bool:  # a price shocked to 0 counts as worthless
            t = _totals(shock(m, {moved: -bps}), a, strict=False)
            return t.liquidation_value < t.debt_value

        assert under(drop) and not under(drop - 1)


def test_drop_to_liquidation_and_shock():
    m = market()
    a = acct(-1_000 * 10**6, weth=E18)  # liquidatable below 1000/0.895 = $1117.31
    drop = drop_to_liquidation_bps(m, a)
    assert drop == 4_414  # 2000 * (1 - 0.4414) = 1117.2 < 1117.318; 4413 leaves 1117.4
    assert is_liquidatable(shock(m, {WETH: -drop}), a)
    assert not is_liquidatable(shock(m, {WETH: -(drop - 1)}), a)
    assert drop_to_liquidation_bps(m, acct(-1_000 * 10**6)) == 0  # no collateral: liquidatable
    both = acct(-1_000 * 10**6, weth=E18, wbtc=10**8)  # the WBTC alone covers the debt
    assert drop_to_liquidation_bps(m, both, WETH) is None
    assert drop_to_liquidation_bps(m, both) is None  # main (WBTC) to 0: the WETH still covers it
    assert drop_to_liquidation_bps(m, acct(10**6, weth=E18)) is None  # no borrow
    assert drop_to_liquidation_bps(m, a, USDC) is None  # the debt's price falling never liquidates
    with pytest.raises(KeyError):
        drop_to_liquidation_bps(m, a, "0x00000000000000000000000000000000000000ff")  # not priced here
    assert shock(m, {USDC: 500}).price(USDC) == 105_000_000
    with pytest.raises(KeyError):
        shock(m, {ALICE: -1})
    with pytest.raises(ValueError):
        shock(m, {WETH: -10_001})


# ------------------------------------------------------------------ properties

indexes = st.integers(BASE_INDEX_SCALE, 50 * BASE_INDEX_SCALE)
amounts = st.integers(-(10**20), 10**20)


@given(indexes, indexes, amounts)
def test_present_of_principal_never_favours_the_account(si, bi, x):
    """presentValue(principalValue(x)) <= x: a supply rounds down, a debt rounds up."""
    m = market(supply_index=si, borrow_index=bi)
    back = present_value(m, principal_value(m, x))
    assert back <= x
    assert x - back <= -(-max(si, bi) // BASE_INDEX_SCALE)  # at most one index step of rounding


@given(indexes, st.integers(-(10**25), 10**25))
def test_principal_of_present_loses_at_most_a_wei_of_supply_and_none_of_debt(idx, p):
    m = market(supply_index=idx, borrow_index=idx)
    again = principal_value(m, present_value(m, p))
    if p < 0:
        assert again == p
    else:
        assert p - 1 <= again <= p


@given(st.integers(-(10**30), 10**30), st.integers(1, 10**12), st.sampled_from([10**6, 10**8, 10**18]))
def test_signed_mul_price_is_odd(n, price, scale):
    assert signed_mul_price(-n, price, scale) == -signed_mul_price(n, price, scale)


@given(st.integers(1, 10**6 * 10**6), st.integers(0, 10**21), st.integers(0, 10**9),
       st.integers(1, 10**7 * 10**8), st.integers(1, 10**7 * 10**8), st.integers(90 * 10**6, 110 * 10**6))
def test_liquidatable_is_monotone_in_collateral_prices(debt, weth, wbtc, p_weth, p_wbtc, p_usdc):
    a = acct(-debt, weth=weth, wbtc=wbtc)
    m = market(weth_e8=p_weth, wbtc_e8=p_wbtc, usdc_e8=p_usdc)
    lower = market(weth_e8=max(1, p_weth * 9 // 10), wbtc_e8=p_wbtc, usdc_e8=p_usdc)
    if is_liquidatable(m, a):
        assert is_liquidatable(lower, a)
    hf, hf_lower = hf_wad(m, a), hf_wad(lower, a)
    if hf is not None and hf_lower is not None:
        assert hf_lower <= hf
    assert (hf is not None and hf < WAD) == is_liquidatable(m, a)
