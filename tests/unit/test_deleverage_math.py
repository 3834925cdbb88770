"""Aave V3 deleverage sizing (pure): the smallest repay from the position's own collateral,
sold through exact Uniswap V3 math, that brings the health factor to the target."""

from math import isqrt

from keeper.dex.route import Route, quote_route
from keeper.dex.v3_math import get_tick_at_sqrt_ratio
from keeper.dex.v3_pool import PoolState
from keeper.model import ProtectRule
from keeper.protocols.aave_v3.deleverage import (
    FLASH_AAVE,
    DexInputs,
    apply_transfer_out,
    deleverage_top_up,
    plan_deleverage,
)
from keeper.protocols.aave_v3.health import account_data
from keeper.protocols.aave_v3.math import percent_mul
from keeper.protocols.aave_v3.topup import apply_repay
from keeper.units import parse_fixed
from tests.unit.test_health_builders import USDC, WETH, account, market

E18, E6 = 10**18, 10**6
CONTRACT = "0x000000000000000000000000000000000000C0DE"
TARGET = parse_fixed("1.4", 18)


def weth_usdc_pool(fee: int, weth_depth: int, weth: str = WETH.asset, usdc: str = USDC.asset) -> PoolState:
    """A full-range pool at 2000 USDC per WETH holding ``weth_depth`` WETH (and its USDC)."""
    t0, t1 = sorted((weth, usdc), key=str.lower)
    usdc_depth = weth_depth * 2000 * E6 // E18
    if t0 == weth:
        sqrt_p, liq = isqrt(2000 * E6 * 2**192 // E18), isqrt(weth_depth * usdc_depth)
    else:
        sqrt_p, liq = isqrt(E18 * 2**192 // (2000 * E6)), isqrt(weth_depth * usdc_depth)
    spacing = 60 if fee == 3000 else 10
    edge = 887272 // spacing * spacing
    return PoolState("0x" + "11" * 20, t0, t1, fee, spacing, sqrt_p, get_tick_at_sqrt_ratio(sqrt_p), liq,
                     ((-edge, liq), (edge, -liq)))


def dex(*pools: PoolState, premium_bps: int = 5) -> DexInputs:
    return DexInputs({Route.single(WETH.asset, p.fee, USDC.asset).hops[0].key(): p for p in pools},
                     FLASH_AAVE, "0x" + "22" * 20, premium_bps)


def after(m, acct, q) -> int:
    return account_data(m, apply_transfer_out(m, apply_repay(m, acct, USDC.asset, q.repay),
                                              WETH.asset, q.withdraw)).health_factor_wad


def test_smallest_repay_reaches_the_target_after_price_impact_and_flash_fee():
    # 10 WETH at 2000 (LT 82.5%), 15000 USDC debt: HF 1.1
    m, acct = market(), account({WETH: 10 * E18}, {USDC: 15_000 * E6})
    d = dex(weth_usdc_pool(3000, 200 * E18))
    q = plan_deleverage(m, acct, TARGET, WETH.asset, USDC.asset, d, pool=m.pool, contract=CONTRACT,
                        max_slippage_bps=100)
    assert q is not None and q.expected_hf_wad == after(m, acct, q) >= TARGET
    assert q.expected_hf_wad - TARGET < TARGET // 200  # within 0.5% above the target
    # the swap pays the flash loan back; one wei less collateral would not
    route = Route.single(WETH.asset, 3000, USDC.asset)
    assert q.flash_fee == percent_mul(q.repay, 5)
    assert quote_route(route, d.pools, q.withdraw) == q.expected_out >= q.repay + q.flash_fee
    assert quote_route(route, d.pools, q.withdraw - 1) < q.repay + q.flash_fee
    # minimal: a slightly lower target repays less
    lower = plan_deleverage(m, acct, TARGET - TARGET // 100, WETH.asset, USDC.asset, d, pool=m.pool,
                            contract=CONTRACT, max_slippage_bps=100)
    assert lower.repay < q.repay and lower.withdraw < q.withdraw
    # the swap sold below the oracle by the pool fee and the price impact
    assert q.oracle_out > q.expected_out and 30 <= q.price_impact_bps < 400  # ~4 WETH in a 200 WETH pool


def test_price_impact_sells_more_collateral_in_a_shallow_pool_and_the_deeper_tier_wins():
    m, acct = market(), account({WETH: 10 * E18}, {USDC: 15_000 * E6})
    kw = dict(pool=m.pool, contract=CONTRACT, max_slippage_bps=100)
    deep = plan_deleverage(m, acct, TARGET, WETH.asset, USDC.asset, dex(weth_usdc_pool(3000, 1000 * E18)), **kw)
    shallow = plan_deleverage(m, acct, TARGET, WETH.asset, USDC.asset, dex(weth_usdc_pool(3000, 60 * E18)), **kw)
    assert shallow.withdraw > deep.withdraw and shallow.price_impact_bps > deep.price_impact_bps
    assert shallow.expected_hf_wad >= TARGET and deep.expected_hf_wad >= TARGET
    both = plan_deleverage(m, acct, TARGET, WETH.asset, USDC.asset,
                           dex(weth_usdc_pool(3000, 60 * E18), weth_usdc_pool(500, 1000 * E18)), **kw)
    assert both.fee == 500 and both.withdraw < deep.withdraw  # lower fee, deeper pool


def test_no_plan_without_a_pool_debt_or_contract():
    m, acct = market(), account({WETH: 10 * E18}, {USDC: 15_000 * E6})
    kw = dict(pool=m.pool, contract=CONTRACT, max_slippage_bps=100)
    assert plan_deleverage(m, acct, TARGET, WETH.asset, USDC.asset, dex(), **kw) is None
    assert plan_deleverage(m, account({WETH: 10 * E18}), TARGET, WETH.asset, USDC.asset,
                           dex(weth_usdc_pool(3000, 200 * E18)), **kw) is None
    rule = ProtectRule(acct.account, parse_fixed("1.15", 18), TARGET, (("deleverage", "WETH->USDC"),))
    assert deleverage_top_up("k", m, acct, 0, rule, dex(weth_usdc_pool(3000, 200 * E18))) is None
    with_contract = ProtectRule(acct.account, parse_fixed("1.15", 18), TARGET, (("deleverage", "WETH->USDC"),),
                                contract=CONTRACT)
    d = deleverage_top_up("k", m, acct, 0, with_contract, dex(weth_usdc_pool(3000, 200 * E18)))
    assert d is not None and d.plan.action == "deleverage" and d.plan.asset == WETH.asset
    assert d.quote.contract == CONTRACT and d.plan.amount == d.quote.withdraw


def test_stop_loss_repays_all_of_the_debt_below_the_price_only():
    from keeper.protocols.aave_v3.deleverage import close_top_up, closing

    m, acct = market(), account({WETH: 10 * E18}, {USDC: 15_000 * E6})
    d = dex(weth_usdc_pool(3000, 1000 * E18))
    base = dict(contract=CONTRACT, actions=(("deleverage", "WETH->USDC"),))
    above = ProtectRule(acct.account, parse_fixed("1.05", 18), TARGET, close_below=("WETH", 1_999 * 10**8), **base)
    at = ProtectRule(acct.account, parse_fixed("1.05", 18), TARGET, close_below=("WETH", 2_000 * 10**8), **base)
    assert not closing(m, above) and closing(m, at)
    top = close_top_up("k", m, acct, 0, at, d)
    q = top.quote
    assert q.repay >= 15_000 * E6 and q.expected_out >= q.repay + q.flash_fee
    after_close = apply_transfer_out(m, apply_repay(m, acct, USDC.asset, q.repay), WETH.asset, q.withdraw)
    assert account_data(m, after_close).total_debt_base == 0  # no debt left
    assert 0 < q.withdraw < 10 * E18  # the rest of the WETH stays the borrower's


def test_smallest_input_is_the_smallest_paying_input_in_few_quotes():
    import random

    from keeper.dex import deleverage as dl

    pool = weth_usdc_pool(500, 300 * E18)
    route = Route.single(WETH.asset, 500, USDC.asset)
    pools = {route.hops[0].key(): pool}
    calls = [0]
    real = dl.quote_route

    def counted(*a):
        calls[0] += 1
        return real(*a)

    rng = random.Random(7)
    small = [2000 * E6, 25_000 * E6] + [rng.randrange(E6, 60_000 * E6) for _ in range(20)]  # <10% of the pool
    needs = [1, 2, 1999, 123_456_789_012, 300_000 * E6] + small
    for need in needs:
        calls[0] = 0
        dl.quote_route = counted
        try:
            x = dl.smallest_input(route, pools, need, 10**4 * E18)
        finally:
            dl.quote_route = real
        assert x is not None and quote_route(route, pools, x) >= need > quote_route(route, pools, x - 1), need
        if need in small:
            assert calls[0] < 60, (need, calls[0])  # a bisection over [0, 1e22] takes 74
    assert dl.smallest_input(route, pools, 10**9 * E6, 10 * E18) is None  # not even all of it pays


def test_boost_borrows_the_most_that_keeps_the_target_after_price_impact():
    from keeper.protocols.aave_v3.boost import apply_borrow, plan_boost
    from keeper.protocols.aave_v3.topup import apply_supply

    m, acct = market(), account({WETH: 10 * E18}, {USDC: 5_000 * E6})  # HF 3.3
    d = dex(weth_usdc_pool(500, 300 * E18))
    q = plan_boost(m, acct, TARGET, WETH.asset, USDC.asset, d, pool=m.pool, contract=CONTRACT,
                   max_slippage_bps=100)
    route = Route.single(USDC.asset, 500, WETH.asset)

    def hf_after(borrow: int) -> int:
        bought = quote_route(route, d.pools, borrow)
        return account_data(m, apply_borrow(m, apply_supply(m, acct, WETH.asset, bought), USDC.asset, borrow)
                            ).health_factor_wad

    assert q is not None and q.bought == quote_route(route, d.pools, q.borrow)
    assert q.expected_hf_wad == hf_after(q.borrow) >= TARGET > hf_after(q.borrow + 1)  # the most it may borrow
    assert q.expected_hf_wad - TARGET < TARGET // 200 and q.min_hf_wad < TARGET < q.max_hf_wad
    assert plan_boost(m, account({WETH: 10 * E18}, {USDC: 12_000 * E6}), TARGET, WETH.asset, USDC.asset, d,
                      pool=m.pool, contract=CONTRACT, max_slippage_bps=100) is None  # already below it
