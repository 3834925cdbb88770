"""account_data: GenericLogic.calculateUserAccountData on hand-built market states."""

from dataclasses import replace

import pytest
from hypothesis import given, strategies as st

from keeper.errors import SourceError
from keeper.protocols.aave_v3.health import account_data, calculate_user_account_data
from keeper.protocols.aave_v3.model import AccountData, EModeCategory
from keeper.units import RAY, SECONDS_PER_YEAR, UINT256_MAX, WAD
from tests.unit.test_health_builders import (
    CRV, DAI, NOLT, T0, USDC, WBTC, WETH, WSTETH, account, address, market, reserve,
)  # fmt: skip

E18, E8, E6 = 10**18, 10**8, 10**6


def test_one_collateral_one_debt():
    # 10 WETH at 2000 = 20000 USD; 15000 USDC debt; LT 82.5% -> HF 16500 / 15000 = 1.1
    got = account_data(market(), account({WETH: 10 * E18}, {USDC: 15_000 * E6}))
    assert got == AccountData(
        total_collateral_base=20_000 * E8,
        total_debt_base=15_000 * E8,
        available_borrows_base=1_000 * E8,  # 80% of 20000 - 15000
        liquidation_threshold_bps=8_250,
        ltv_bps=8_000,
        health_factor_wad=11 * WAD // 10,
    )


def test_several_assets_with_18_8_6_decimals():
    acct = account(
        {WETH: E18, WBTC: E8 // 2, USDC: 1_000 * E6},
        {DAI: 5_000 * E18, WETH: E18 // 10, USDC: E6},
    )
    got = account_data(market(), acct)
    # collateral: 2000 + 0.5 * 60000 + 1000 = 33000 USD
    assert got.total_collateral_base == 33_000 * E8
    # debt: 5000 * 0.9999 + 0.1 * 2000 + 1 = 5200.5 USD
    assert got.total_debt_base == 520_050_000_000
    # weighted LTV (2000*8000 + 30000*7000 + 1000*7700) / 33000 = 7081.8 -> 7081 (floored)
    assert got.ltv_bps == 7_081
    # weighted LT (2000*8250 + 30000*7500 + 1000*8000) / 33000 = 7560.6 -> 7560
    assert got.liquidation_threshold_bps == 7_560
    # percentMul(33000e8, 7560) = 24948e8 exactly; wadDiv half up
    assert got.health_factor_wad == (2_494_800_000_000 * WAD + 520_050_000_000 // 2) // 520_050_000_000
    assert got.health_factor_wad == 4_797_231_035_477_357_946  # 16632e21 / 3467 = ...946.38
    assert got.available_borrows_base == 33_000 * 7_081 * E8 // 10_000 - 520_050_000_000


def test_interest_accrued_since_the_last_update():
    half_year = SECONDS_PER_YEAR // 2
    weth = replace(WETH, liquidity_index_ray=105 * RAY // 100, current_liquidity_rate_ray=RAY // 10)
    usdc = replace(USDC, variable_borrow_index_ray=12 * RAY // 10)  # rate 0: index as stored
    m = market(weth, WBTC, usdc, timestamp=T0 + half_year)
    acct = account({weth: 10 * E18}, {usdc: 10_000 * E6}, stable={usdc: 500 * E6})
    got = account_data(m, acct)
    # income 1.05 * (1 + 0.1/2) = 1.1025 -> 11.025 WETH = 22050 USD
    assert got.total_collateral_base == 22_050 * E8
    # 10000 * 1.2 + 500 stable = 12500 USD
    assert got.total_debt_base == 12_500 * E8
    assert got.health_factor_wad == 1_455_300_000_000_000_000  # 22050 * 0.825 / 12500


def test_compounded_debt_uses_the_borrow_rate():
    usdc = replace(USDC, current_variable_borrow_rate_ray=RAY // 20, last_update_timestamp=T0 - 86_400)
    got = account_data(market(WETH, WBTC, usdc), account({WETH: E18}, {usdc: 1_000 * E6}))
    # 1000 USDC at 5% for one day: 1000 * (1 + 0.05 / year)^86400 = 1000.13699568 USDC;
    # rayMul rounds to 1000.136996 USDC (6 decimals), i.e. 1000.136996 USD in 1e8
    assert got.total_debt_base == 100_013_699_600


def test_no_debt_gives_max_health_factor():
    got = account_data(market(), account({WETH: E18}))
    assert got.health_factor_wad == UINT256_MAX
    assert got.available_borrows_base == 1_600 * E8


def test_empty_config_early_return():
    assert account_data(market(), account()) == AccountData(0, 0, 0, 0, 0, UINT256_MAX)


def test_debt_without_collateral_has_zero_health_factor():
    got = account_data(market(), account({}, {USDC: 100 * E6}))
    assert (got.health_factor_wad, got.liquidation_threshold_bps, got.available_borrows_base) == (0, 0, 0)


def test_zero_lt_collateral_is_ignored():
    with_nolt = account_data(market(), account({WETH: E18, NOLT: 1_000 * E18}, {USDC: 1_000 * E6}))
    without = account_data(market(), account({WETH: E18}, {USDC: 1_000 * E6}))
    assert with_nolt == without


def test_zero_ltv_collateral_counts_for_lt_not_ltv():
    acct = account({WETH: E18, CRV: 2_000 * E18}, {USDC: 1_000 * E6})
    totals = calculate_user_account_data(market(), acct)
    assert totals.has_zero_ltv_collateral
    assert totals.total_collateral_base == 3_000 * E8  # 2000 + 2000 * 0.5
    assert totals.avg_ltv_bps == 2_000 * 8_000 // 3_000  # CRV dilutes the LTV: 5333
    assert totals.avg_liquidation_threshold_bps == (2_000 * 8_250 + 1_000 * 4_500) // 3_000
    assert not calculate_user_account_data(market(), account({WETH: E18})).has_zero_ltv_collateral


def test_emode_uses_category_ltv_and_lt_for_assets_in_it():
    acct = account({WETH: E18, WSTETH: E18, USDC: 1_000 * E6}, {WETH: E18}, emode=1)
    got = account_data(market(), acct)
    # WETH 2000, wstETH 2300 at e-mode 90/93%; USDC 1000 at its own 77/80%
    assert got.total_collateral_base == 5_300 * E8
    assert got.ltv_bps == (4_300 * 9_000 + 1_000 * 7_700) // 5_300
    assert got.liquidation_threshold_bps == (4_300 * 9_300 + 1_000 * 8_000) // 5_300
    no_emode = account_data(market(), replace(acct, emode=0))
    assert no_emode.liquidation_threshold_bps == (2_000 * 8_250 + 2_300 * 7_500 + 1_000 * 8_000) // 5_300


def test_emode_price_source_overrides_in_category_prices_only():
    priced = EModeCategory(1, 9_000, 9_300, 10_100, WETH.asset, 1_900 * E8, "ETH priced")
    acct = account({WSTETH: E18, USDC: 1_000 * E6}, {WETH: E18 // 2, DAI: 100 * E18}, emode=1)
    got = account_data(market(emode=(priced,)), acct)
    # wstETH and WETH read the category price 1900; USDC and DAI their own
    assert got.total_collateral_base == 1_900 * E8 + 1_000 * E8
    assert got.total_debt_base == 950 * E8 + 9_999 * E6
    # the category price is only used by accounts in that category
    outside = account_data(market(emode=(priced,)), replace(acct, emode=0))
    assert outside.total_collateral_base == 2_300 * E8 + 1_000 * E8


def test_emode_price_zero_means_no_override():
    zero_price = EModeCategory(1, 9_000, 9_300, 10_100, WETH.asset, 0, "feed gave 0")
    acct = account({WSTETH: E18}, {WETH: E18 // 2}, emode=1)
    assert account_data(market(emode=(zero_price,)), acct).total_collateral_base == 2_300 * E8


def test_missing_emode_category_is_a_source_error():
    with pytest.raises(SourceError, match="e-mode category 2"):
        account_data(market(), account({WETH: E18}, {USDC: E6}, emode=2))


def test_bits_without_balances_are_a_source_error():
    acct = account({WETH: E18}, {USDC: E6})
    with pytest.raises(SourceError, match="no balances"):
        account_data(market(), replace(acct, reserves=acct.reserves[:1]))


def test_bits_for_a_reserve_the_market_lacks_are_a_source_error():
    # Aave would skip a dropped reserve; a missing one here may hide debt, so refuse
    acct = account({WETH: E18}, {USDC: E6})
    extra = replace(acct, user_config=acct.user_config | 1 << (2 * 100))
    with pytest.raises(SourceError, match="reserve 100, absent"):
        account_data(market(), extra)


def test_floored_average_lt_makes_hf_non_monotone_in_price():
    # Aave's avgLT is floor(sum(value_i * lt_i) / total). When the asset whose price
    # rises has a below-average LT, the floor can drop a whole bps of LT: here one
    # base unit MORE of collateral value makes the account liquidatable.
    low = reserve(0, "LOW", 18, 1_000_000_007, 5_000, 5_000)
    high = reserve(1, "HIGH", 18, 1_000_000_007, 8_000, 8_000)
    debt = reserve(2, "USDX", 8, E8, 8_000, 8_000)
    acct = account({low: E18, high: E18}, {debt: 1_299_800_011})
    before = account_data(market(low, high, debt), acct).health_factor_wad
    after = account_data(market(replace(low, price_base=1_000_000_008), high, debt), acct).health_factor_wad
    assert before >= WAD > after


# ------------------------------------------------------------------ properties

debt_assets = st.lists(st.sampled_from([USDC, DAI, WBTC]), min_size=1, max_size=3, unique=True)
amounts = st.integers(min_value=1, max_value=10**30)
prices = st.integers(min_value=0, max_value=10**14)


@given(debt_assets, amounts, st.lists(amounts, min_size=3, max_size=3), prices, prices)
def test_hf_never_rises_as_the_collateral_price_falls(debts, coll, debt_amounts, p1, p2):
    lo, hi = sorted((p1, p2))
    acct = account({WETH: coll}, dict(zip(debts, debt_amounts)))
    hf_lo = account_data(market(replace(WETH, price_base=lo), WBTC, USDC, DAI), acct).health_factor_wad
    hf_hi = account_data(market(replace(WETH, price_base=hi), WBTC, USDC, DAI), acct).health_factor_wad
    assert hf_lo <= hf_hi


@given(st.lists(st.sampled_from([WETH, WBTC, CRV]), min_size=1, max_size=3, unique=True),
       st.lists(amounts, min_size=3, max_size=3), amounts, prices, prices)  # fmt: skip
def test_hf_never_falls_as_the_debt_price_falls(colls, coll_amounts, debt, p1, p2):
    lo, hi = sorted((p1, p2))
    acct = account(dict(zip(colls, coll_amounts)), {DAI: debt})
    hf_lo = account_data(market(WETH, WBTC, USDC, replace(DAI, price_base=lo), NOLT, CRV), acct)
    hf_hi = account_data(market(WETH, WBTC, USDC, replace(DAI, price_base=hi), NOLT, CRV), acct)
    assert hf_lo.health_factor_wad >= hf_hi.health_factor_wad
    assert hf_lo.available_borrows_base >= hf_hi.available_borrows_base


@given(amounts, amounts, st.integers(min_value=0, max_value=10 * SECONDS_PER_YEAR))
def test_debt_never_shrinks_with_time(coll, debt, dt):
    usdc = replace(USDC, current_variable_borrow_rate_ray=RAY // 10, current_liquidity_rate_ray=RAY // 20)
    acct = account({WETH: coll}, {usdc: debt})
    now = account_data(market(WETH, WBTC, usdc, timestamp=T0), acct)
    later = account_data(market(WETH, WBTC, usdc, timestamp=T0 + dt), acct)
    assert later.total_debt_base >= now.total_debt_base
    assert later.health_factor_wad <= now.health_factor_wad


def test_price_keys_are_addresses_not_symbols():
    # the same symbol twice must not confuse the math: it walks reserve ids
    twin = reserve(2, "WETH", 6, E8, 7_700, 8_000, asset=address(0xBEEF))
    got = account_data(market(WETH, WBTC, twin), account({WETH: E18}, {twin: 100 * E6}))
    assert got.total_debt_base == 100 * E8
