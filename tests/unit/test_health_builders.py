"""Builders of hand-made Aave V3 market states, shared by the test_health_* files.

A market where everything is updated at ``T0`` (indices used as stored) unless a
reserve says otherwise. The few tests here only check the builders themselves.
"""

from __future__ import annotations

from keeper.protocols.aave_v3.math import is_borrowing, is_using_as_collateral
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState, EModeCategory, Reserve, ReserveConfig, UserReserve
from keeper.units import RAY

T0 = 1_700_000_000
POOL = "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2"
USER = "0x00000000000000000000000000000000000000Aa"
ZERO = "0x" + "00" * 20


def address(n: int) -> str:
    return f"0x{n:040x}"


def config(ltv: int, lt: int, decimals: int, emode: int = 0) -> ReserveConfig:
    return ReserveConfig(
        ltv_bps=ltv, liquidation_threshold_bps=lt, liquidation_bonus_bps=10_500 if lt else 0,
        decimals=decimals, active=True, frozen=False, borrowing_enabled=True,
        stable_borrowing_enabled=False, paused=False, borrowable_in_isolation=False,
        siloed_borrowing=False, flashloan_enabled=True, reserve_factor_bps=1_000, borrow_cap=0,
        supply_cap=0, debt_ceiling=0, liquidation_protocol_fee_bps=1_000, emode_category=emode,
    )  # fmt: skip


def reserve(id: int, symbol: str, decimals: int, price: int, ltv: int, lt: int, emode: int = 0, **kw) -> Reserve:
    fields = dict(
        id=id, asset=address(0x1000 + id), symbol=symbol, config=config(ltv, lt, decimals, emode),
        a_token=address(0x2000 + id), stable_debt_token=address(0x3000 + id),
        variable_debt_token=address(0x4000 + id), liquidity_index_ray=RAY, variable_borrow_index_ray=RAY,
        current_liquidity_rate_ray=0, current_variable_borrow_rate_ray=0, last_update_timestamp=T0,
        price_base=price, price_source=address(0x5000 + id),
    )  # fmt: skip
    fields.update(kw)
    return Reserve(**fields)


# id, symbol, decimals, price (1e8 USD), ltv, lt, emode
WETH = reserve(0, "WETH", 18, 2_000 * 10**8, 8_000, 8_250, emode=1)
WBTC = reserve(1, "WBTC", 8, 60_000 * 10**8, 7_000, 7_500)
USDC = reserve(2, "USDC", 6, 10**8, 7_700, 8_000)
DAI = reserve(3, "DAI", 18, 99_990_000, 7_500, 8_000)
NOLT = reserve(4, "NOLT", 18, 10**8, 0, 0)  # LT 0: never counts as collateral
CRV = reserve(5, "CRV", 18, 50_000_000, 0, 4_500)  # LTV 0, LT > 0: "zero-LTV collateral"
WSTETH = reserve(6, "wstETH", 18, 2_300 * 10**8, 7_000, 7_500, emode=1)
RESERVES = (WETH, WBTC, USDC, DAI, NOLT, CRV, WSTETH)

ETH_EMODE = EModeCategory(1, 9_000, 9_300, 10_100, ZERO, 0, "ETH correlated")


def market(*reserves: Reserve, emode: tuple[EModeCategory, ...] = (ETH_EMODE,), timestamp: int = T0,
           unreliable: frozenset[str] = frozenset()) -> AaveMarketState:  # fmt: skip
    return AaveMarketState(
        pool=POOL, block=19_000_000, timestamp=timestamp, base_currency_unit=10**8,
        reserves=tuple(reserves) or RESERVES, emode_categories={c.id: c for c in emode},
        unreliable_assets=unreliable,
    )  # fmt: skip


def account(collateral: dict[Reserve, int] = {}, debt: dict[Reserve, int] = {},
            stable: dict[Reserve, int] = {}, emode: int = 0) -> AaveAccount:  # fmt: skip
    """Scaled aToken balances as collateral, scaled variable debt (+ stable) as debt; bits set to match."""
    cfg = 0
    ids = {r.id for r in (*collateral, *debt, *stable)}
    for r in collateral:
        cfg |= 1 << (2 * r.id + 1)
    for r in (*debt, *stable):
        cfg |= 1 << (2 * r.id)
    by_id = {r.id: r for r in (*collateral, *debt, *stable)}
    rows = tuple(
        UserReserve(i, collateral.get(by_id[i], 0), debt.get(by_id[i], 0), stable.get(by_id[i], 0))
        for i in sorted(ids)
    )
    return AaveAccount(account=USER, user_config=cfg, emode=emode, reserves=rows)


def test_account_builder_sets_matching_bits():
    a = account({WETH: 1, USDC: 2}, {USDC: 3, DAI: 4})
    assert is_using_as_collateral(a.user_config, 0) and not is_borrowing(a.user_config, 0)
    assert is_using_as_collateral(a.user_config, 2) and is_borrowing(a.user_config, 2)
    assert is_borrowing(a.user_config, 3) and not is_using_as_collateral(a.user_config, 3)
    assert [r.reserve_id for r in a.reserves] == [0, 2, 3]


def test_market_reserves_are_indexed_by_id():
    assert all(r.id == i for i, r in enumerate(market().reserves))
