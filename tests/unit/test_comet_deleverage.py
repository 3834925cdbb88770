"""Compound V3 deleverage sizing (pure): the smallest base repay from the position's own
collateral, sold through exact Uniswap V3 math, that brings keeper's Comet health factor to
the target; withdrawFrom's rules (assetsIn, NotCollateralized). On chain (the contract's
cometHealthFactor, a 2%-a-block decline): tests/integration/test_deleverage_comet.py."""

import pytest

from keeper.dex.deleverage import FLASH_AAVE, FLASH_MORPHO, HORIZON_S, DexInputs, smallest_input
from keeper.dex.route import Route, quote_route
from keeper.model import ProtectRule
from keeper.protocols.compound_v3.deleverage import (
    apply_withdraw,
    comet_deleverage_top_up,
    oracle_value,
    plan_comet_deleverage,
)
from keeper.protocols.compound_v3.math import CometRevert, accrue, assets_in, borrow_balance, hf_wad
from keeper.protocols.compound_v3.topup import apply_repay
from keeper.units import parse_fixed
from tests.unit.test_comet_math import USDC, WETH, acct, market
from tests.unit.test_deleverage_math import weth_usdc_pool

E18, E6 = 10**18, 10**6
CONTRACT = "0x000000000000000000000000000000000000C0DE"
TARGET = parse_fixed("1.3", 18)
KW = dict(comet="0x00000000000000000000000000000000000000cc", contract=CONTRACT, max_slippage_bps=100)


def dex(*depths_by_fee: tuple[int, int], source: int = FLASH_AAVE, premium_bps: int = 5) -> DexInputs:
    pools = [weth_usdc_pool(fee, depth, WETH, USDC) for fee, depth in depths_by_fee]
    return DexInputs({Route.single(WETH, p.fee, USDC).hops[0].key(): p for p in pools}, source,
                     "0x" + "22" * 20, premium_bps if source == FLASH_AAVE else 0)


def hf_after(m, a, q) -> int:
    return hf_wad(m, apply_withdraw(m, apply_repay(m, a, q.repay), WETH, q.withdraw))


def test_smallest_repay_reaches_the_target_after_price_impact_and_flash_fee():
    # 10 WETH at 2000 (liquidateCF 0.895), 15,500 USDC debt: HF 1.1548
    m, a = market(), acct(-15_500 * E6, weth=10 * E18)
    d = dex((3000, 200 * E18))
    q = plan_comet_deleverage(m, a, TARGET, WETH, d, **KW)
    assert q is not None and q.expected_hf_wad == hf_after(m, a, q) >= TARGET
    assert q.expected_hf_wad - TARGET < TARGET // 200  # within 0.5% above the target
    assert q.flash_fee == q.repay * 5 // 10_000 + (q.repay * 5 % 10_000 >= 5_000)  # Aave percentMul
    route = Route.single(WETH, 3000, USDC)
    assert quote_route(route, d.pools, q.withdraw) == q.expected_out >= q.repay + q.flash_fee
    assert quote_route(route, d.pools, q.withdraw - 1) < q.repay + q.flash_fee
    # minimal: one unit of base less, with the collateral that pays it, misses the target
    less = q.repay - 1
    w = smallest_input(route, d.pools, less + less * 5 // 10_000, 10 * E18)
    assert hf_wad(m, apply_withdraw(m, apply_repay(m, a, less), WETH, w)) < TARGET
    assert q.oracle_out == oracle_value(m, WETH, q.withdraw) > q.expected_out  # fee + impact below Comet's price
    assert 30 <= q.price_impact_bps < 400


def test_a_free_flash_loan_and_a_deeper_pool_sell_less():
    m, a = market(), acct(-15_500 * E6, weth=10 * E18)
    aave = plan_comet_deleverage(m, a, TARGET, WETH, dex((3000, 200 * E18)), **KW)
    morpho = plan_comet_deleverage(m, a, TARGET, WETH, dex((3000, 200 * E18), source=FLASH_MORPHO), **KW)
    assert morpho.flash_fee == 0 and morpho.withdraw < aave.withdraw and morpho.flash_source == FLASH_MORPHO
    both = plan_comet_deleverage(m, a, TARGET, WETH, dex((3000, 200 * E18), (500, 2000 * E18)), **KW)
    assert both.fee == 500 and both.withdraw < aave.withdraw


def test_withdraw_follows_comet():
    m, a = market(), acct(-1_000 * E6, weth=10 * E18)
    after = apply_withdraw(m, a, WETH, 9 * E18)
    assert assets_in(m, after) == 1 and after.collateral[WETH] == E18
    with pytest.raises(CometRevert, match="NotCollateralized"):  # 0.1 WETH * 2000 * borrowCF 0.825 < 1000
        apply_withdraw(m, a, WETH, 10 * E18 - 10**17)
    no_debt = acct(0, weth=E18)
    assert assets_in(m, apply_withdraw(m, no_debt, WETH, E18)) == 0  # the bit clears at 0
    with pytest.raises(CometRevert):
        apply_withdraw(m, no_debt, WETH, E18 + 1)


def test_unreachable_targets_and_rules_that_do_not_apply():
    m = market()
    assert plan_comet_deleverage(m, acct(0, weth=E18), TARGET, WETH, dex((3000, 200 * E18)), **KW) is None
    # selling all of the collateral (10 WETH, ~5% impact) cannot pay a 19,000 USDC debt
    assert plan_comet_deleverage(m, acct(-19_000 * E6, weth=10 * E18), parse_fixed("5", 18), WETH,
                                 dex((3000, 200 * E18)), **KW) is None
    a = acct(-15_500 * E6, weth=10 * E18)
    rule = ProtectRule(a.account, parse_fixed("1.2", 18), TARGET, (("deleverage", "WETH->USDC"),), None, CONTRACT)
    d = comet_deleverage_top_up("comet", m, a, 1, rule, dex((3000, 200 * E18)), KW["comet"])
    assert d is not None and d.plan.action == "deleverage" and d.quote.repay < borrow_balance(m, a)
    assert d.quote.deadline > m.timestamp
    for other in (ProtectRule(a.account, 1, TARGET, (("deleverage", "WBTC->USDC"),), None, CONTRACT),
                  ProtectRule(a.account, 1, TARGET, (("deleverage", "WETH->USDC"),), None, None)):
        assert comet_deleverage_top_up("comet", m, a, 1, other, dex((3000, 200 * E18)), KW["comet"]) is None
    assert comet_deleverage_top_up("comet", m, a, 1, rule, None, KW["comet"]) is None


def test_the_stop_loss_repays_all_of_the_borrow_and_keeps_the_rest():
    m, a = market(), acct(-5_000 * E6, weth=10 * E18)  # HF 3.58: far above any trigger
    close = ProtectRule(a.account, parse_fixed("1.2", 18), TARGET, (("deleverage", "WETH->USDC"),), None, CONTRACT,
                        close_below=("WETH", 2_100 * 10**8), closing=True)
    d = comet_deleverage_top_up("comet", m, a, 1, close, dex((500, 2000 * E18)), KW["comet"], close=True)
    q = d.quote
    later = accrue(m, m.timestamp + HORIZON_S)
    assert q.repay == borrow_balance(later, a) and q.withdraw < 10 * E18 and "stop-loss" in d.reason
    assert hf_wad(later, apply_withdraw(later, apply_repay(later, a, q.repay), WETH, q.withdraw)) is None
    other = ProtectRule(a.account, 1, TARGET, (("deleverage", "WETH->USDC"),), None, CONTRACT,
                        close_below=("WBTC", 1), closing=True)
    assert comet_deleverage_top_up("comet", m, a, 1, other, dex((500, 2000 * E18)), KW["comet"], close=True) is None
