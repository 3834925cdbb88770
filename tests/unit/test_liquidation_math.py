"""plan_liquidation / best_liquidation: LiquidationLogic.executeLiquidationCall on hand-built markets."""

from dataclasses import replace

import pytest
from hypothesis import given, settings, strategies as st

from keeper.protocols.aave_v3.liquidation import (
    CLOSE_FACTOR_HF_THRESHOLD,
    LiquidationInvalid,
    best_liquidation,
    liquidation_pairs,
    plan_liquidation,
)
from keeper.protocols.aave_v3.math import get_normalized_debt, ray_mul
from keeper.protocols.aave_v3.health import account_data
from keeper.protocols.aave_v3.model import EModeCategory
from keeper.units import RAY, SECONDS_PER_YEAR, UINT256_MAX, WAD
from tests.unit.test_health_builders import (
    CRV, DAI, ETH_EMODE, NOLT, T0, USDC, WBTC, WETH, WSTETH, account, address, market,
)  # fmt: skip

E18, E8, E6 = 10**18, 10**8, 10**6
MAX = UINT256_MAX


def crashed(weth_price: int = 1_700 * E8, *others, emode=(ETH_EMODE,)):
    weth = replace(WETH, price_base=weth_price)
    return weth, market(weth, WBTC, USDC, DAI, NOLT, CRV, WSTETH, *others, emode=emode)


def test_protocol_fee_and_bonus_by_hand():
    # 10 WETH at 2000, 17000 USDC debt: HF = 20000 * 0.825 / 17000 = 0.97 -> close factor 50%
    m = market()
    acct = account({WETH: 10 * E18}, {USDC: 17_000 * E6})
    q = plan_liquidation(m, acct, WETH.asset, USDC.asset, 1_000 * E6)
    # base 0.5 WETH; bonus 5% -> 0.525; bonus part 0.025; 10% of it to the treasury
    assert q.debt_to_repay == 1_000 * E6
    assert q.protocol_fee_collateral == 25 * E18 // 10_000
    assert q.collateral_to_receive == 5225 * E18 // 10_000
    assert q.collateral_value_base == 1_045 * E8  # 0.5225 * 2000
    assert q.debt_value_base == 1_000 * E8
    assert q.bonus_value_base == 45 * E8
    assert q.close_factor_bps == 5_000
    assert q.health_factor_wad == 970_588_235_294_117_647


def test_close_factor_switches_at_exactly_095():
    # value 1151515151515 (1e8 USD) of WETH: percentMul(., 8250) == 9500e8; debt 10000 USDC
    weth_wei = 1_151_515_151_515 * E18 // (2_000 * E8)
    m = market()
    at = account({WETH: weth_wei}, {USDC: 10_000 * E6})
    assert account_data(m, at).health_factor_wad == CLOSE_FACTOR_HF_THRESHOLD
    q = plan_liquidation(m, at, WETH.asset, USDC.asset, MAX)
    assert (q.close_factor_bps, q.debt_to_repay) == (10_000, 10_000 * E6)  # HF == 0.95: not above
    above = account({WETH: weth_wei}, {USDC: 10_000 * E6 - 1})
    assert account_data(m, above).health_factor_wad > CLOSE_FACTOR_HF_THRESHOLD
    q = plan_liquidation(m, above, WETH.asset, USDC.asset, MAX)
    # percentMul(9999.999999, 5000) rounds half up
    assert (q.close_factor_bps, q.debt_to_repay) == (5_000, (10_000 * E6 - 1) * 5_000 // 10_000 + 1)


def test_debt_to_cover_below_the_cap_is_taken_as_is_and_max_means_the_cap():
    m = market()
    acct = account({WETH: 10 * E18}, {USDC: 17_000 * E6})
    assert plan_liquidation(m, acct, WETH.asset, USDC.asset, 123).debt_to_repay == 123
    assert plan_liquidation(m, acct, WETH.asset, USDC.asset, MAX).debt_to_repay == 8_500 * E6
    assert plan_liquidation(m, acct, WETH.asset, USDC.asset, 8_500 * E6 + 1).debt_to_repay == 8_500 * E6


def test_collateral_cap_takes_the_whole_balance_and_asks_for_less_debt():
    # 1 WETH (2000) + 10 WBTC; debt 20000 DAI. Liquidating WETH for up to 10000 DAI would need
    # 5.25 WETH: capped at the 1 WETH balance
    m = market()
    acct = account({WETH: E18, WBTC: 10 * E8}, {DAI: 600_000 * E18})
    q = plan_liquidation(m, acct, WETH.asset, DAI.asset, MAX)
    assert q.close_factor_bps == 10_000
    fee = q.protocol_fee_collateral
    assert q.collateral_to_receive + fee == E18  # the whole balance
    # debtAmountNeeded = percentDiv(2000e8 * 1e18 * 1e18 / (99990000 * 1e18), 10500)
    raw = 2_000 * E8 * E18 * E18 // (99_990_000 * E18)
    assert q.debt_to_repay == (raw * 10_000 + 10_500 // 2) // 10_500
    bonus_part = E18 - (E18 * 10_000 + 10_500 // 2) // 10_500
    assert fee == (bonus_part * 1_000 + 5_000) // 10_000


def test_collateral_balance_uses_the_normalized_income():
    year = SECONDS_PER_YEAR
    weth = replace(WETH, liquidity_index_ray=RAY, current_liquidity_rate_ray=RAY // 10, price_base=1_000 * E8)
    m = market(weth, WBTC, USDC, timestamp=T0 + year)
    acct = account({weth: E18}, {USDC: 2_000 * E6})
    q = plan_liquidation(m, acct, weth.asset, USDC.asset, MAX)
    assert q.collateral_to_receive + q.protocol_fee_collateral == 11 * E18 // 10  # 1 WETH * 1.1


def test_debt_uses_the_normalized_debt_and_stable_debt():
    usdc = replace(USDC, current_variable_borrow_rate_ray=RAY // 10, last_update_timestamp=T0 - 86_400)
    m = market(WETH, WBTC, usdc)
    acct = account({WETH: E18}, {usdc: 1_000 * E6}, stable={usdc: 800 * E6})
    q = plan_liquidation(m, acct, WETH.asset, usdc.asset, MAX)
    total = ray_mul(1_000 * E6, get_normalized_debt(usdc, T0)) + 800 * E6
    assert q.close_factor_bps == 10_000 and q.debt_to_repay == total


def test_emode_bonus_for_collateral_in_the_category_only():
    weth, m = crashed(1_300 * E8)
    acct = account({weth: 10 * E18, WBTC: E8 // 10}, {WSTETH: 8 * E18}, emode=1)
    assert account_data(m, acct).health_factor_wad < WAD
    q = plan_liquidation(m, acct, weth.asset, WSTETH.asset, E18)
    # 1 wstETH = 2300 / 1300 WETH, e-mode bonus 1%
    base = 2_300 * E8 * E18 * E18 // (1_300 * E8 * E18)
    coll = (base * 10_100 + 5_000) // 10_000
    fee = ((coll - (coll * 10_000 + 5_050) // 10_100) * 1_000 + 5_000) // 10_000
    assert (q.collateral_to_receive, q.protocol_fee_collateral) == (coll - fee, fee)
    q = plan_liquidation(m, acct, WBTC.asset, WSTETH.asset, E18 // 100)  # WBTC: not in e-mode 1
    base = 2_300 * E8 * E18 // 100 * E8 // (60_000 * E8 * E18)
    coll = (base * 10_500 + 5_000) // 10_000
    assert q.collateral_to_receive + q.protocol_fee_collateral == coll


def test_emode_price_source_prices_collateral_and_debt():
    source = address(0x9999)
    cat = EModeCategory(1, 9_000, 9_300, 10_100, source, 2_000 * E8, "ETH with a price")
    weth, m = crashed(1_300 * E8, emode=(cat,))
    acct = account({weth: 10 * E18}, {WSTETH: 10 * E18}, emode=1)  # HF 18600 / 20000
    q = plan_liquidation(m, acct, weth.asset, WSTETH.asset, E18)
    # both at the category price: 1 wstETH repaid -> 1.01 WETH, fee 10% of the 0.01 bonus part
    coll = E18 * 10_100 // 10_000
    fee = ((coll - (coll * 10_000 + 5_050) // 10_100) * 1_000 + 5_000) // 10_000
    assert (q.collateral_to_receive, q.protocol_fee_collateral) == (coll - fee, fee)
    # valued at the assets' own prices: 1.0099 WETH at 1300 < 1 wstETH at 2300: a loss
    assert q.bonus_value_base < 0
    assert best_liquidation(m, acct, 0, 0) is None
    # debt priced at the category price even for a debt outside the category (no check in 3.0.2)
    acct = account({weth: 10 * E18}, {USDC: 20_000 * E6}, emode=1)  # USDC at its own price in the HF
    assert account_data(m, acct).health_factor_wad < WAD
    q = plan_liquidation(m, acct, weth.asset, USDC.asset, 1_000)  # 0.001 USDC priced as 2000 USD per USDC
    assert q.collateral_to_receive + q.protocol_fee_collateral == 1_000 * E18 // E6 * 10_100 // 10_000


@pytest.mark.parametrize("case, error", [
    ("healthy", "HEALTH_FACTOR_NOT_BELOW_THRESHOLD"),
    ("collateral_bit_off", "COLLATERAL_CANNOT_BE_LIQUIDATED"),
    ("lt_zero", "COLLATERAL_CANNOT_BE_LIQUIDATED"),
    ("no_debt_in_asset", "SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER"),
    ("paused", "RESERVE_PAUSED"),
    ("inactive", "RESERVE_INACTIVE"),
    ("zero_cover", "INVALID_BURN_AMOUNT"),
    ("dust_collateral", "INVALID_BURN_AMOUNT"),
])  # fmt: skip
def test_reverts_like_validate_liquidation_call(case, error):
    weth, m = crashed()
    acct = account({weth: 10 * E18, NOLT: E18}, {USDC: 15_000 * E6})
    coll, debt, cover = weth, USDC, MAX
    if case == "healthy":
        m = market()
    elif case == "collateral_bit_off":
        acct = account({weth: 10 * E18, WBTC: E8 // 100}, {USDC: 15_000 * E6, WBTC: 1})
        acct = replace(acct, user_config=acct.user_config & ~(1 << (2 * WBTC.id + 1)))
        coll = WBTC
    elif case == "lt_zero":
        coll = NOLT
    elif case == "no_debt_in_asset":
        debt = DAI
    elif case in ("paused", "inactive"):
        flag = {"paused": {"paused": True}, "inactive": {"active": False}}[case]
        usdc = replace(USDC, config=replace(USDC.config, **flag))
        m = market(weth, WBTC, usdc, DAI, NOLT, CRV, WSTETH)
    elif case == "zero_cover":
        cover = 0
    elif case == "dust_collateral":
        cover = 1  # 1e-6 USDC is worth less than 1 satoshi: nothing to burn
        coll = WBTC
        acct = account({weth: 10 * E18, WBTC: 1}, {USDC: 15_000 * E6})
    with pytest.raises(LiquidationInvalid) as e:
        plan_liquidation(m, acct, coll.asset, debt.asset, cover)
    assert e.value.error == error


def test_best_liquidation_picks_the_largest_bonus_and_honors_the_wallet():
    wbtc = replace(WBTC, config=replace(WBTC.config, liquidation_bonus_bps=11_000))
    weth = replace(WETH, price_base=1_500 * E8)
    m = market(weth, wbtc, USDC, DAI)
    acct = account({weth: 10 * E18, wbtc: E8 // 10}, {USDC: 12_000 * E6, DAI: 8_000 * E18})
    assert account_data(m, acct).health_factor_wad < CLOSE_FACTOR_HF_THRESHOLD
    best = best_liquidation(m, acct, 0, 0)
    quotes = [plan_liquidation(m, acct, c.asset, d.asset, MAX) for c, d in liquidation_pairs(m, acct)]
    assert len(quotes) == 4
    assert best == max(quotes, key=lambda q: q.bonus_value_base)
    assert (best.collateral_asset, best.debt_asset) == (weth.asset, USDC.asset)
    # own capital: only 100 USDC and 5000 DAI in the wallet
    held = best_liquidation(m, acct, 0, 0, {USDC.asset.upper(): 100 * E6, DAI.asset: 5_000 * E18})
    # WBTC's 10% bonus on 5000 DAI beats WETH's 5% on 5000 DAI and on 100 USDC
    assert (held.collateral_asset, held.debt_asset, held.debt_to_repay) == (wbtc.asset, DAI.asset, 5_000 * E18)
    assert best_liquidation(m, acct, 0, 0, {}) is None
    # gas and the minimum profit
    assert best_liquidation(m, acct, best.bonus_value_base, 0) == best
    assert best_liquidation(m, acct, best.bonus_value_base, 1) is None
    assert best_liquidation(m, acct, 10 * E8, best.bonus_value_base - 10 * E8) == best


def test_best_liquidation_none_when_healthy():
    assert best_liquidation(market(), account({WETH: 10 * E18}, {USDC: 1_000 * E6}), 0, 0) is None


amounts = st.integers(min_value=1, max_value=10**6)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=300, max_value=2_000),  # WETH price (USD)
    st.integers(min_value=10_000, max_value=60_000),  # WBTC price (USD)
    amounts, amounts, amounts, amounts,  # collateral WETH / WBTC (milli), debt USDC / DAI (units)
    st.booleans(),  # e-mode 1 (wstETH debt) or none
)
def test_best_is_at_least_every_pair_at_max_amount(p_weth, p_wbtc, c_weth, c_wbtc, d_usdc, d_dai, emode):
    weth = replace(WETH, price_base=p_weth * E8)
    wbtc = replace(WBTC, price_base=p_wbtc * E8)
    m = market(weth, wbtc, USDC, DAI, NOLT, CRV, WSTETH)
    debt = {WSTETH: d_dai * E18 // 1000} if emode else {USDC: d_usdc * E6, DAI: d_dai * E18}
    acct = account({weth: c_weth * E18 // 1000, wbtc: c_wbtc * E8 // 1000}, debt, emode=int(emode))
    hf = account_data(m, acct).health_factor_wad
    best = best_liquidation(m, acct, 0, -(10**40))
    if hf >= WAD:
        assert best is None
        return
    others = []
    for c, d in liquidation_pairs(m, acct):
        try:
            others.append(plan_liquidation(m, acct, c.asset, d.asset, MAX))
        except LiquidationInvalid:
            pass
    if not others:
        assert best is None
        return
    assert best is not None and all(best.bonus_value_base >= q.bonus_value_base for q in others)
    # the max amount is optimal for its pair: smaller covers never give more (up to 1 base unit of rounding)
    for frac in (1, 3, 7):
        try:
            q = plan_liquidation(m, acct, best.collateral_asset, best.debt_asset, best.debt_to_repay * frac // 8)
        except LiquidationInvalid:
            continue
        assert q.bonus_value_base <= best.bonus_value_base + 1
    cap_ok = best.close_factor_bps == (10_000 if hf <= CLOSE_FACTOR_HF_THRESHOLD else 5_000)
    assert cap_ok
