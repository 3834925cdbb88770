"""What-ifs with no IO: shock, drop_to_liquidation_bps, position_from."""

from dataclasses import replace

import pytest
from hypothesis import given, settings, strategies as st

from keeper.protocols.aave_v3.health import (
    account_data,
    LiquidationPrice,
    drop_to_liquidation_bps,
    liquidation_price,
    main_collateral,
    position_from,
    price_key,
    shock,
)
from keeper.health.status import Thresholds
from keeper.model import Position, Status
from keeper.protocols.aave_v3.model import EModeCategory
from keeper.units import UINT256_MAX, WAD
from tests.unit.test_health_builders import (
    CRV, DAI, ETH_EMODE, POOL, USDC, USER, WBTC, WETH, WSTETH, account, address, market,
)  # fmt: skip

E18, E8, E6 = 10**18, 10**8, 10**6


def hf(m, acct) -> int:
    return account_data(m, acct).health_factor_wad


def liquidatable(m, acct) -> bool:
    return hf(m, acct) < WAD


# ------------------------------------------------------------------- shock


def test_shock_moves_one_asset_by_signed_bps():
    m = market()
    out = shock(m, {WETH.asset: -2_000, WBTC.asset: 500})
    assert out.by_asset(WETH.asset).price_base == 1_600 * E8
    assert out.by_asset(WBTC.asset).price_base == 63_000 * E8
    assert out.by_asset(USDC.asset).price_base == USDC.price_base
    assert m.by_asset(WETH.asset).price_base == 2_000 * E8  # the input is untouched


def test_shock_floors():
    m = market(replace(WETH, price_base=3), USDC)
    assert shock(m, {WETH.asset: -5_000}).by_asset(WETH.asset).price_base == 1  # 1.5 -> 1
    assert shock(m, {WETH.asset: -10_000}).by_asset(WETH.asset).price_base == 0


def test_shock_moves_emode_prices_keyed_by_the_asset():
    by_weth = EModeCategory(1, 9_000, 9_300, 10_100, WETH.asset, 1_990 * E8, "ETH")
    by_other = EModeCategory(2, 9_700, 9_750, 10_100, address(0xABC), E8, "USD")
    out = shock(market(emode=(by_weth, by_other)), {WETH.asset.upper().replace("0X", "0x"): -1_000})
    assert out.emode_categories[1].price_base == 1_791 * E8
    assert out.emode_categories[2].price_base == E8
    # a price source that is not a listed reserve can be shocked on its own
    out = shock(market(emode=(by_weth, by_other)), {address(0xABC): -100})
    assert out.emode_categories[2].price_base == 99_000_000


def test_shock_refuses_bad_input():
    with pytest.raises(KeyError):
        shock(market(), {address(0xDEAD): -100})
    with pytest.raises(ValueError):
        shock(market(), {WETH.asset: -10_001})
    with pytest.raises(ValueError):
        shock(market(), {WETH.asset: -100, WETH.asset.lower().replace("0x", "0X"): -100})


@given(st.lists(st.sampled_from([WETH, WBTC, USDC, DAI]), unique=True))
def test_shock_by_zero_changes_nothing(assets):
    m = market()
    assert shock(m, {r.asset: 0 for r in assets}) == m


# ------------------------------------------------------- drop to liquidation


def test_drop_one_collateral_one_debt():
    # HF 1.1: 20000 * 0.825 vs 15000 -> liquidatable below 1818.18 USD, i.e. -9.0909%
    m, acct = market(), account({WETH: 10 * E18}, {USDC: 15_000 * E6})
    assert drop_to_liquidation_bps(m, acct) == 910
    assert liquidatable(shock(m, {WETH.asset: -910}), acct)
    assert not liquidatable(shock(m, {WETH.asset: -909}), acct)


def test_liquidation_price_is_exact():
    # liquidatable iff percentMul(10 p, 8250) < 15000e8 iff 82500 p + 5000 < 15000e12
    # iff p <= 181_818_181_818 (1818.18181818 USD)
    m, acct = market(), account({WETH: 10 * E18}, {USDC: 15_000 * E6})
    assert liquidation_price(m, acct) == LiquidationPrice(WETH.asset, 2_000 * E8, 181_818_181_818)
    at = replace(WETH, price_base=181_818_181_818)
    above = replace(WETH, price_base=181_818_181_819)
    assert liquidatable(market(at, WBTC, USDC), acct)
    assert not liquidatable(market(above, WBTC, USDC), acct)
    # already liquidatable: the current price itself
    sunk = account({WETH: E18}, {USDC: 1_700 * E6})
    assert liquidation_price(m, sunk).price == 2_000 * E8
    assert liquidation_price(m, account({WETH: E18})) is None


def test_drop_is_zero_when_already_liquidatable_and_none_without_debt():
    m = market()
    assert drop_to_liquidation_bps(m, account({WETH: E18}, {USDC: 1_700 * E6})) == 0
    assert drop_to_liquidation_bps(m, account({WETH: E18})) is None
    assert drop_to_liquidation_bps(m, account()) is None


def test_drop_when_the_debt_is_the_collateral_asset():
    # only WETH on both sides: HF ~ 0.825 * 10 / 5 whatever the price -> never
    m = market()
    assert drop_to_liquidation_bps(m, account({WETH: 10 * E18}, {WETH: 5 * E18})) is None
    # plus USDC debt: 8.25 p < 5 p + 5000 -> p < 1538.46 -> -23.08%
    acct = account({WETH: 10 * E18}, {WETH: 5 * E18, USDC: 5_000 * E6})
    assert drop_to_liquidation_bps(m, acct) == 2_308
    assert liquidatable(shock(m, {WETH.asset: -2_308}), acct)
    assert not liquidatable(shock(m, {WETH.asset: -2_307}), acct)


def test_drop_of_the_main_collateral_only():
    # WBTC 6000 USD is the main collateral; WETH 2000 USD stays put
    m, acct = market(), account({WETH: E18, WBTC: E8 // 10}, {USDC: 5_000 * E6})
    assert main_collateral(m, acct) == WBTC
    b = drop_to_liquidation_bps(m, acct)
    assert liquidatable(shock(m, {WBTC.asset: -b}), acct)
    assert not liquidatable(shock(m, {WBTC.asset: -(b - 1)}), acct)
    # even WBTC at 0 leaves 2000 * 0.825 < 5000: liquidatable; check a case where it does not
    safe = account({WETH: 10 * E18, WBTC: E8}, {USDC: 1_000 * E6})
    assert main_collateral(m, safe) == WBTC
    assert drop_to_liquidation_bps(m, safe) is None


def test_drop_in_emode_with_its_own_price_moves_the_price_source():
    priced = EModeCategory(1, 9_000, 9_300, 10_100, WETH.asset, 2_000 * E8, "ETH")
    m = market(emode=(priced,))
    acct = account({WSTETH: 10 * E18}, {USDC: 15_000 * E6}, emode=1)
    assert price_key(m, acct, WSTETH) == WETH.asset  # wstETH is priced as ETH in this category
    b = drop_to_liquidation_bps(m, acct)
    assert b is not None and liquidatable(shock(m, {WETH.asset: -b}), acct)
    assert not liquidatable(shock(m, {WETH.asset: -(b - 1)}), acct)
    # collateral and debt both priced by the category: they move together, never liquidatable
    both = account({WSTETH: 10 * E18}, {WETH: 5 * E18}, emode=1)
    assert drop_to_liquidation_bps(m, both) is None


single = st.sampled_from([WETH, WBTC, USDC, CRV])
debts = st.lists(st.sampled_from([WETH, WBTC, USDC, DAI]), min_size=1, max_size=3, unique=True)
sizes = st.integers(min_value=1, max_value=10**26)


@settings(max_examples=60, deadline=None)
@given(single, sizes, debts, st.lists(sizes, min_size=3, max_size=3))
def test_drop_is_the_smallest_liquidating_bps_for_one_collateral(coll, amount, debt_assets, debt_amounts):
    m = market()
    acct = account({coll: amount}, dict(zip(debt_assets, debt_amounts)))
    b = drop_to_liquidation_bps(m, acct)
    if b is None:
        assert account_data(m, acct).total_debt_base == 0 or not liquidatable(shock(m, {coll.asset: -10_000}), acct)
        return
    assert 0 <= b <= 10_000
    assert liquidatable(shock(m, {coll.asset: -b}), acct)
    if b > 0:
        assert not liquidatable(shock(m, {coll.asset: -(b - 1)}), acct)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([WETH, WBTC, USDC, CRV, DAI]), min_size=2, max_size=4, unique=True),
       st.lists(sizes, min_size=4, max_size=4), sizes)  # fmt: skip
def test_returned_drop_always_liquidates(colls, amounts, debt):
    m = market()
    acct = account(dict(zip(colls, amounts)), {USDC: debt})
    b = drop_to_liquidation_bps(m, acct)
    if b is not None:
        main = main_collateral(m, acct)
        assert liquidatable(shock(m, {main.asset: -b}), acct)


# ---------------------------------------------------------------- position


def test_position_from():
    m, acct = market(), account({WETH: 10 * E18, USDC: E6}, {USDC: 15_000 * E6})
    pos = position_from(m, acct)
    data = account_data(m, acct)
    assert pos == Position(
        protocol="aave_v3", market=POOL, account=USER, block=19_000_000,
        collateral_base=data.total_collateral_base, debt_base=data.total_debt_base,
        health_factor_wad=data.health_factor_wad, liquidation_threshold_bps=data.liquidation_threshold_bps,
        status=Status.AT_RISK, reliable=True, main_collateral="WETH",
        drop_to_liquidation_bps=drop_to_liquidation_bps(m, acct),
        assets=frozenset({WETH.asset, USDC.asset}),
    )  # fmt: skip


def test_position_without_debt():
    pos = position_from(market(), account({WETH: E18}), protocol="aave_v3_fork")
    assert (pos.health_factor_wad, pos.status, pos.drop_to_liquidation_bps) == (None, Status.SAFE, None)
    assert pos.protocol == "aave_v3_fork" and pos.main_collateral == "WETH"
    empty = position_from(market(), account())
    assert (empty.main_collateral, empty.assets, empty.collateral_base) == (None, frozenset(), 0)


def test_position_uses_the_given_thresholds():
    acct = account({WETH: 10 * E18}, {USDC: 15_000 * E6})  # HF 1.1
    assert position_from(market(), acct, thresholds=Thresholds(WAD, WAD, 2 * WAD)).status is Status.WATCH
    assert position_from(market(), acct, thresholds=Thresholds(12 * WAD // 10, 2 * WAD, 2 * WAD)).status is (
        Status.LIQUIDATABLE
    )


def test_position_reliability():
    acct = account({WETH: 10 * E18}, {USDC: 15_000 * E6})
    assert not position_from(market(unreliable=frozenset({USDC.asset.upper()})), acct).reliable
    assert position_from(market(unreliable=frozenset({WBTC.asset})), acct).reliable
    # in e-mode with a price source, that source is read too
    priced = EModeCategory(1, 9_000, 9_300, 10_100, address(0xE1), 2_000 * E8, "ETH")
    in_emode = replace(acct, emode=1)
    m = market(emode=(priced,), unreliable=frozenset({address(0xE1)}))
    assert not position_from(m, in_emode).reliable
    assert position_from(market(emode=(ETH_EMODE,), unreliable=frozenset({address(0xE1)})), in_emode).reliable


def test_max_hf_is_none_in_position_but_max_in_account_data():
    acct = account({WETH: E18})
    assert account_data(market(), acct).health_factor_wad == UINT256_MAX
    assert position_from(market(), acct).health_factor_wad is None
