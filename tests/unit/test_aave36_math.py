"""Aave 3.6 math, pure: the rounding of TokenMath / WadRayMath / MathUtils, the 3.6 health
factor, e-mode bitmaps, the 3.3 close factor and dust rule, the deficit, the grace period,
top-up sizing and the custom-error decoding. Constants and formulas as in npm
@aave-dao/aave-v3-origin 3.6.0 (LiquidationLogic.sol, GenericLogic.sol, TokenMath.sol);
the exactness against a real 3.6 Pool is in tests/integration/test_aave36.py."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import pytest
from eth_abi import encode
from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from keeper.protocols.aave_v3.liquidation36 import (
    MIN_LEFTOVER_BASE,
    Liquidation36Invalid,
    best_liquidation36,
    plan_liquidation36,
)
from keeper.protocols.aave_v3.math36 import (
    a_token_balance,
    account_data36,
    compounded_interest,
    hf36,
    mul_div_ceil,
    ray_div_ceil,
    ray_div_floor,
    ray_mul_ceil,
    ray_mul_floor,
    v_token_balance,
    walk,
)
from keeper.protocols.aave_v3.topup36 import hf_after36, plan_top_up36
from keeper.protocols.aave_v3.health import account_data
from keeper.protocols.aave_v3.model import EModeCategory
from keeper.protocols.aave_v3.errors import decode
from keeper.units import RAY, SECONDS_PER_YEAR, UINT256_MAX, WAD
from tests.unit.test_health_builders import DAI, USDC, WBTC, WETH, ZERO, account, market

uints = st.integers(min_value=0, max_value=2**128)
indexes = st.integers(min_value=RAY, max_value=5 * RAY)
STABLE = EModeCategory(1, 9_300, 9_500, 10_100, ZERO, 0, "stable", collateral_bitmap=1 << USDC.id,
                       borrowable_bitmap=(1 << USDC.id) | (1 << DAI.id))


def m36(*reserves, emode=(STABLE,), **kw):
    return replace(market(*(reserves or (WETH, WBTC, USDC, DAI)), emode=emode, **kw), version=(3, 6))


def usd(reserve, dollars: int) -> int:
    """Token units worth ``dollars`` at the builder's price (1 at index RAY = scaled units)."""
    return dollars * 10**8 * 10**reserve.config.decimals // reserve.price_base


# ------------------------------------------------------------------ rounding


@given(uints, indexes)
def test_balances_round_in_the_protocols_favour(scaled, index):
    exact = Fraction(scaled * index, RAY)
    assert a_token_balance(scaled, index) <= exact <= v_token_balance(scaled, index)
    assert v_token_balance(scaled, index) - a_token_balance(scaled, index) <= 1


def test_rounding_helpers_match_the_solidity_definitions():
    assert (ray_mul_floor(1, RAY + 1), ray_mul_ceil(1, RAY + 1)) == (1, 2)
    assert (ray_div_floor(1, 3 * RAY), ray_div_ceil(1, 3 * RAY)) == (0, 1)
    assert mul_div_ceil(10, 3, 4) == 8 and mul_div_ceil(8, 3, 4) == 6
    with pytest.raises(OverflowError):
        ray_mul_ceil(UINT256_MAX, 2)


def test_compounded_interest_is_3_6s_polynomial():
    rate, dt = 5 * RAY // 100, SECONDS_PER_YEAR
    x = rate * dt // SECONDS_PER_YEAR
    half_up = lambda a, b: (a * b + RAY // 2) // RAY  # noqa: E731  rayMul
    assert compounded_interest(rate, 0, dt) == RAY + x + half_up(x, x // 2 + half_up(x, x // 6))
    assert compounded_interest(rate, 7, 7) == RAY


# ------------------------------------------------------------------ health factor


def test_hf_is_the_weighted_sum_over_debt_not_the_floored_average():
    # two collaterals with different LTs: 3.0.2 floors the average LT, 3.6 does not
    mk = m36()
    acct = account({WETH: usd(WETH, 3_333), WBTC: usd(WBTC, 1_234)}, {USDC: usd(USDC, 3_000)})
    w = walk(mk, acct)
    weighted = w.collateral[WETH.id] * 8_250 + w.collateral[WBTC.id] * 7_500
    assert w.weighted_lt == weighted
    assert w.totals.health_factor_wad == (weighted * WAD + w.totals.total_debt_base // 2) // w.totals.total_debt_base // 10_000
    assert hf36(mk, acct) != account_data(replace(mk, version=(3, 0)), acct).health_factor_wad


def test_debt_in_base_rounds_up_and_collateral_down():
    idx = RAY + 123_456_789
    weth, usdc = replace(WETH, liquidity_index_ray=idx), replace(USDC, variable_borrow_index_ray=idx)
    mk = m36(weth, WBTC, usdc, DAI)
    acct = account({weth: 10**18 + 7}, {usdc: 1_000_000_001})
    t = account_data36(mk, acct)
    assert t.total_collateral_base == ray_mul_floor(10**18 + 7, idx) * WETH.price_base // 10**18
    assert t.total_debt_base == -(-ray_mul_ceil(1_000_000_001, idx) * USDC.price_base // 10**6)


def test_emode_lt_applies_only_to_collateral_on_the_bitmap():
    mk = m36()
    acct = account({USDC: usd(USDC, 1_000), DAI: usd(DAI, 1_000)}, {DAI: usd(DAI, 1_500)}, emode=1)
    w = walk(mk, acct)  # USDC (bit set) at 95%, DAI (bit not set) at its own 80%
    assert w.weighted_lt == w.collateral[USDC.id] * 9_500 + w.collateral[DAI.id] * 8_000
    ltv0 = replace(STABLE, ltvzero_bitmap=1 << USDC.id)
    t = walk(m36(emode=(ltv0,)), acct).totals
    assert t.has_zero_ltv_collateral and t.avg_ltv_bps == 7_500 * w.collateral[DAI.id] // t.total_collateral_base


# ------------------------------------------------------------------ liquidation rules


def liquidatable(debts_usd: dict, collateral_usd: int, hf_bps: int = 9_700):
    """WETH collateral worth ``collateral_usd``, stable debts (USD), WETH repriced to reach hf_bps."""
    acct = account({WETH: usd(WETH, collateral_usd)}, {r: usd(r, d) for r, d in debts_usd.items()})
    debt_base = sum(d * 10**8 for d in debts_usd.values())
    price = WETH.price_base * debt_base * hf_bps // (collateral_usd * 10**8 * 8_250)
    return m36(replace(WETH, price_base=price), WBTC, USDC, DAI), acct


def test_close_factor_is_100_pct_under_2000_dollars_even_above_hf_095():
    mk, acct = liquidatable({USDC: 1_500}, 2_000)
    q = plan_liquidation36(mk, acct, WETH.asset, USDC.asset, UINT256_MAX)
    assert 95 * WAD // 100 < q.health_factor_wad < WAD
    assert (q.close_factor_bps, q.debt_to_repay) == (10_000, usd(USDC, 1_500))


def test_close_factor_is_half_of_total_debt_when_both_sides_are_large():
    mk, acct = liquidatable({USDC: 3_000, DAI: 6_000}, 12_000)
    total = walk(mk, acct).totals.total_debt_base
    q = plan_liquidation36(mk, acct, WETH.asset, DAI.asset, UINT256_MAX)
    assert q.close_factor_bps == 5_000
    assert q.debt_to_repay == (total * 5_000 + 5_000) // 10_000 * 10**18 // DAI.price_base
    deep_mk, deep = liquidatable({USDC: 3_000, DAI: 6_000}, 12_000, hf_bps=9_400)
    assert plan_liquidation36(deep_mk, deep, WETH.asset, DAI.asset, UINT256_MAX).close_factor_bps == 10_000


def test_dust_rule_and_the_amount_that_never_reverts():
    mk, acct = liquidatable({DAI: 3_000, USDC: 2_500}, 6_000)
    with pytest.raises(Liquidation36Invalid, match="MustNotLeaveDust"):
        plan_liquidation36(mk, acct, WETH.asset, DAI.asset, UINT256_MAX)  # capped at $2,750
    only_dai = {DAI.asset: 10**30}
    q = best_liquidation36(mk, acct, 0, 0, only_dai)
    assert q.debt_asset == DAI.asset and q.debt_to_cover == q.debt_to_repay
    left = usd(DAI, 3_000) - q.debt_to_repay
    assert left * DAI.price_base // 10**18 >= MIN_LEFTOVER_BASE * 10_049 // 10_000  # $1,000 + margin
    assert plan_liquidation36(mk, acct, WETH.asset, DAI.asset, q.debt_to_cover) == q


def test_taking_all_collateral_is_a_deficit_and_never_dust():
    mk, acct = liquidatable({USDC: 5_000, DAI: 500}, 5_000, hf_bps=7_000)
    q = plan_liquidation36(mk, acct, WETH.asset, USDC.asset, UINT256_MAX)
    assert q.collateral_to_receive + q.protocol_fee_collateral == usd(WETH, 5_000)  # all of it
    assert q.leaves_deficit and q.debt_to_repay < usd(USDC, 5_000)


def test_grace_period_blocks_liquidation_until_it_ends():
    mk, acct = liquidatable({USDC: 1_500}, 2_000)
    graced = replace(mk, reserves=tuple(replace(r, liquidation_grace_until=mk.timestamp) if r.id == USDC.id
                                        else r for r in mk.reserves))
    with pytest.raises(Liquidation36Invalid, match="LiquidationGraceSentinelCheckFailed"):
        plan_liquidation36(graced, acct, WETH.asset, USDC.asset, UINT256_MAX)
    assert best_liquidation36(graced, acct, 0, 0) is None
    assert best_liquidation36(replace(graced, timestamp=mk.timestamp + 1), acct, 0, 0) is not None


def test_self_liquidation_reverts():
    mk, acct = liquidatable({USDC: 1_500}, 2_000)
    with pytest.raises(Liquidation36Invalid, match="SelfLiquidation"):
        plan_liquidation36(mk, acct, WETH.asset, USDC.asset, UINT256_MAX, liquidator=acct.account)


# ------------------------------------------------------------------ top-up


@pytest.mark.parametrize("action,asset", [("repay", USDC), ("supply", WETH)])
def test_top_up_is_the_least_amount_reaching_the_target(action, asset):
    idx = RAY + 987_654_321_987
    weth = replace(WETH, liquidity_index_ray=idx, price_base=1_700 * 10**8)
    usdc = replace(USDC, variable_borrow_index_ray=idx)
    mk = m36(weth, WBTC, usdc, DAI)
    acct = account({weth: 10**18}, {usdc: usd(USDC, 1_300)})
    target = 14 * WAD // 10
    plan = plan_top_up36(mk, acct, target, [(action, asset.asset)], {asset.asset: 10**30})
    assert not plan.partial and plan.expected_hf_wad >= target
    assert hf_after36(mk, acct, action, asset.asset, plan.amount - 1) < target


# ------------------------------------------------------------------ errors


def test_custom_errors_decode_with_their_arguments():
    assert decode(keccak(text="MustNotLeaveDust()")[:4]) == "MustNotLeaveDust()"
    data = keccak(text="InvalidCollateralInEmode(address,uint256)")[:4] + encode(
        ["address", "uint256"], [WETH.asset, 1])
    assert decode(data) == f"InvalidCollateralInEmode({WETH.asset.lower()}, 1)"
    assert decode(b"\x08\xc3\x79\xa0") is None


@given(st.integers(min_value=10**15, max_value=10**24), st.integers(min_value=10**6, max_value=10**13),
       st.integers(min_value=1, max_value=10**12), st.integers(min_value=0, max_value=10**12))
def test_hf_never_rises_when_the_collateral_price_falls(coll, debt, price, cut):
    lower = max(1, price - cut)
    acct = account({WETH: coll, WBTC: coll // 10**10}, {USDC: debt})
    hf = [hf36(m36(replace(WETH, price_base=p), WBTC, USDC, DAI), acct) for p in (price, lower)]
    assert hf[1] <= hf[0]


def test_collateral_the_reserve_cannot_pay_out_is_skipped():
    mk, acct = liquidatable({USDC: 1_500}, 2_000)
    q = plan_liquidation36(mk, acct, WETH.asset, USDC.asset, UINT256_MAX)
    short = replace(mk, reserves=tuple(replace(r, virtual_underlying=q.collateral_to_receive - 1)
                                       if r.id == WETH.id else r for r in mk.reserves))
    with pytest.raises(Liquidation36Invalid, match="Panic"):
        plan_liquidation36(short, acct, WETH.asset, USDC.asset, UINT256_MAX)
    enough = replace(short, reserves=tuple(replace(r, virtual_underlying=q.collateral_to_receive)
                                           if r.id == WETH.id else r for r in short.reserves))
    assert plan_liquidation36(enough, acct, WETH.asset, USDC.asset, UINT256_MAX) == q
