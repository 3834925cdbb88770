"""decide(): positions + policy -> the protocol's planners -> TopUp / Liquidate values (pure),
here with the Aave V3 adapter's planners on a hand-built market."""

from keeper.decide import Policy, decide, liquidations_due, top_ups_due
from keeper.model import Liquidate, ProtectRule, TopUp
from keeper.prices import PriceBook
from keeper.protocols.aave_v3.adapter import AaveV3
from keeper.protocols.aave_v3.health import position_from
from keeper.protocols.aave_v3.plan import encode
from keeper.protocols.base import PlanContext
from keeper.units import WAD
from tests.unit.test_health_builders import POOL, USDC, USER, WETH, account, market

GWEI = 10**9
M = market(WETH, USDC)
ADAPTER = AaveV3(None, None, None, POOL, "m")
ME = "0x00000000000000000000000000000000000000Bb"


def ctx(wallet, gas_usd_e8=1_200_000_000, min_profit=0) -> PlanContext:
    return PlanContext(ME, wallet, gas_usd_e8, min_profit, PriceBook())


def run(m, acct, policy, wallet, context):
    positions = [position_from(m, acct)]
    tops = top_ups_due(policy, "m", positions)
    due = liquidations_due(policy, positions)
    return decide(ADAPTER, m, tops, due, {acct.account: acct}, wallet, context)


def test_liquidatable_position_gets_a_liquidation_that_pays_after_gas():
    acct = account({WETH: 10 * 10**18}, {USDC: 17_000 * 10**6})  # HF = 20000*0.825/17000 < 1
    (d,), refused = run(M, acct, Policy({}, liquidate=True), {USDC.asset: 10**12}, ctx({USDC.asset: 10**12}))
    assert refused == []
    assert isinstance(d, Liquidate) and d.protocol == "aave_v3" and d.accounts == (USER,)
    quote, receive_a_token = d.quote
    assert quote.debt_asset == USDC.asset and quote.collateral_asset == WETH.asset
    assert quote.debt_to_repay == 17_000 * 10**6 // 2  # close factor 50% at HF 0.97
    assert d.gas_usd_e8 == 1_200_000_000 and receive_a_token is False
    assert d.profit_usd_e8 == quote.bonus_value_base - d.gas_usd_e8 > 0  # USD oracle: base == USD e8
    (step,) = encode(POOL, d)
    assert step.to == POOL and step.approvals[0].token == USDC.asset
    assert step.approvals[0].amount == quote.debt_to_repay


def test_no_liquidation_below_min_profit_or_when_disabled_or_unreliable_or_unpriced_gas():
    acct = account({WETH: 10 * 10**18}, {USDC: 17_000 * 10**6})
    rich = {USDC.asset: 10**12}
    assert run(M, acct, Policy({}, liquidate=False), rich, ctx(rich)) == ([], [])
    assert run(M, acct, Policy({}, liquidate=True), rich, ctx(rich, min_profit=10**15)) == ([], [])
    assert run(M, acct, Policy({}, liquidate=True), rich, None) == ([], [])  # gas has no price
    stale = market(WETH, USDC, unreliable=frozenset({WETH.asset}))
    assert not position_from(stale, acct).reliable
    assert run(stale, acct, Policy({}, liquidate=True), rich, ctx(rich)) == ([], [])


def test_own_account_below_trigger_gets_the_smallest_top_up_and_is_never_liquidated():
    acct = account({WETH: 10 * 10**18}, {USDC: 15_000 * 10**6})  # HF 1.1
    rule = ProtectRule(USER, 115 * WAD // 100, 140 * WAD // 100, (("repay", "USDC"),))
    policy = Policy({USER.lower(): rule}, liquidate=True)
    (d,), refused = run(M, acct, policy, {USDC.asset: 10**12}, ctx({USDC.asset: 10**12}))
    assert isinstance(d, TopUp) and d.plan.action == "repay" and not d.plan.partial
    assert d.plan.expected_hf_wad >= rule.target_hf_wad and refused == []
    # an own account above its trigger: nothing
    safe = account({WETH: 10 * 10**18}, {USDC: 5_000 * 10**6})
    assert run(M, safe, policy, {USDC.asset: 10**12}, ctx({})) == ([], [])


def test_protect_rule_for_another_market_does_not_apply_here():
    acct = account({WETH: 10 * 10**18}, {USDC: 15_000 * 10**6})
    rule = ProtectRule(USER, 115 * WAD // 100, 140 * WAD // 100, (("repay", "USDC"),), market="other")
    assert top_ups_due(Policy({USER.lower(): rule}), "m", [position_from(M, acct)]) == []
    assert top_ups_due(Policy({USER.lower(): rule}), "other", [position_from(M, acct)])


def test_a_protected_account_no_action_can_help_is_refused_not_dropped():
    acct = account({WETH: 10 * 10**18}, {USDC: 15_000 * 10**6})
    rule = ProtectRule(USER, 115 * WAD // 100, 140 * WAD // 100, (("repay", "USDC"), ("supply", "XYZ")))
    decisions, (refusal,) = run(M, acct, Policy({USER.lower(): rule}), {}, None)  # empty wallet
    assert decisions == [] and refusal.account == USER
    assert "repay:USDC" in refusal.reason and "supply:XYZ" in refusal.reason


def test_receive_a_token_reaches_the_liquidation_call():
    acct = account({WETH: 10 * 10**18}, {USDC: 17_000 * 10**6})
    rich = {USDC.asset: 10**12}
    context = PlanContext(ME, rich, 1_200_000_000, 0, PriceBook(), receive_a_token=True)
    (d,), _ = run(M, acct, Policy({}, liquidate=True), rich, context)
    (step,) = encode(POOL, d)
    assert step.data[-32:] == (1).to_bytes(32, "big")  # liquidationCall(..., receiveAToken=true)
    (d,), _ = run(M, acct, Policy({}, liquidate=True), rich, ctx(rich))
    assert encode(POOL, d)[0].data[-32:] == bytes(32)


def test_an_account_above_boost_above_hf_is_due_and_a_boost_that_cannot_be_made_is_not_a_refusal():
    safe = account({WETH: 10 * 10**18}, {USDC: 5_000 * 10**6})  # HF 3.3
    rule = ProtectRule(USER, 115 * WAD // 100, 130 * WAD // 100, (("deleverage", "WETH->USDC"),),
                       contract="0x000000000000000000000000000000000000C0DE", boost_above_wad=200 * WAD // 100)
    policy = Policy({USER.lower(): rule})
    assert [p.account for p, _ in top_ups_due(policy, "m", [position_from(M, safe)])] == [USER]
    assert run(M, safe, policy, {}, None) == ([], [])  # no pools read: no boost, and nothing to alert
    below = ProtectRule(USER, 115 * WAD // 100, 130 * WAD // 100, rule.actions, boost_above_wad=400 * WAD // 100)
    assert top_ups_due(Policy({USER.lower(): below}), "m", [position_from(M, safe)]) == []
