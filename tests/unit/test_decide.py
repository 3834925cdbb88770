"""decide(): positions + policy -> TopUp / Liquidate values, from the exact math."""

from keeper.decide import Liquidate, Policy, ProtectRule, TopUp, decide, gas_cost_base
from keeper.protocols.aave_v3.health import position_from
from keeper.units import WAD
from tests.unit.test_health_builders import USDC, USER, WETH, account, market

GWEI = 10**9
M = market(WETH, USDC)


def pos_and_accounts(m, acct):
    return [position_from(m, acct)], {acct.account: acct}


def test_liquidatable_position_gets_a_liquidation_that_pays_after_gas():
    acct = account({WETH: 10 * 10**18}, {USDC: 17_000 * 10**6})  # HF = 20000*0.825/17000 < 1
    positions, accts = pos_and_accounts(M, acct)
    assert positions[0].health_factor_wad < WAD
    policy = Policy({}, liquidate=True, min_profit_base=0)
    (d,) = decide("m", M, positions, accts, policy, {USDC.asset: 10**12}, 10 * GWEI)
    assert isinstance(d, Liquidate)
    assert d.quote.debt_asset == USDC.asset and d.quote.collateral_asset == WETH.asset
    assert d.quote.debt_to_repay == 17_000 * 10**6 // 2  # close factor 50% at HF > 0.95? (0.97)
    assert d.gas_cost_base == gas_cost_base(M, 600_000, 10 * GWEI, "WETH") == 1_200_000_000
    assert d.profit_base == d.quote.bonus_value_base - d.gas_cost_base > 0


def test_no_liquidation_below_min_profit_or_when_disabled_or_unreliable():
    acct = account({WETH: 10 * 10**18}, {USDC: 17_000 * 10**6})
    positions, accts = pos_and_accounts(M, acct)
    rich = {USDC.asset: 10**12}
    assert decide("m", M, positions, accts, Policy({}, liquidate=False), rich, GWEI) == []
    huge = Policy({}, liquidate=True, min_profit_base=10**15)
    assert decide("m", M, positions, accts, huge, rich, GWEI) == []
    stale = market(WETH, USDC, unreliable=frozenset({WETH.asset}))
    positions, accts = pos_and_accounts(stale, acct)
    assert not positions[0].reliable
    assert decide("m", stale, positions, accts, Policy({}, liquidate=True), rich, GWEI) == []


def test_own_account_below_trigger_gets_the_smallest_top_up_and_is_never_liquidated():
    acct = account({WETH: 10 * 10**18}, {USDC: 15_000 * 10**6})  # HF 1.1
    positions, accts = pos_and_accounts(M, acct)
    rule = ProtectRule(USER, 115 * WAD // 100, 140 * WAD // 100, (("repay", "USDC"),))
    policy = Policy({USER.lower(): rule}, liquidate=True)
    (d,) = decide("m", M, positions, accts, policy, {USDC.asset: 10**12}, GWEI)
    assert isinstance(d, TopUp) and d.plan.action == "repay" and not d.plan.partial
    assert d.plan.expected_hf_wad >= rule.target_hf_wad
    # an own account above its trigger: nothing
    safe = account({WETH: 10 * 10**18}, {USDC: 5_000 * 10**6})
    positions, accts = pos_and_accounts(M, safe)
    assert decide("m", M, positions, accts, policy, {USDC.asset: 10**12}, GWEI) == []
