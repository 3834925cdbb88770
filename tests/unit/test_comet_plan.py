"""The Comet planner buys collateral the protocol holds for sale with nobody to absorb (an
absorb whose purchases a crash interrupted): hand-computed at the store-front discount, and
never when Comet does not sell (reserves at target) or the wallet cannot pay."""

from __future__ import annotations

from dataclasses import replace

from keeper.chain.abi import call_data
from keeper.model import Position, Status
from keeper.prices import PriceBook
from keeper.protocols.base import PlanContext
from keeper.protocols.compound_v3 import plan
from tests.unit.test_comet_math import USDC, WETH, market

ME = "0x00000000000000000000000000000000000000d1"


def ctx(usdc: int, gas_usd_e8: int = 10**8) -> PlanContext:
    return PlanContext(ME, {USDC: usdc}, gas_usd_e8, 0, PriceBook())


def test_collateral_for_sale_is_bought_alone_at_the_store_front_discount():
    m = replace(market(), collateral_reserves={WETH: 10**18}, reserves=0)
    (d,) = plan.liquidations("comet", m, [], {}, ctx(10**12))
    # WETH $2000, discount 0.5 * (1 - 0.95): 1 WETH for 1950 USDC; $50 less $1 gas
    assert d.accounts == () and d.quote == ((WETH, 1_950 * 10**6, 10**18),)
    assert d.profit_usd_e8 == 49 * 10**8 and d.expected == 10**18
    (step,) = plan.encode(m.comet, USDC, d, ME)  # no absorb; the purchase is the action
    assert not step.optional and step.approvals[0].amount == 1_950 * 10**6
    assert step.data[:4] == call_data(plan.BUY)[:4]


def test_nothing_is_bought_when_comet_does_not_sell_or_the_wallet_is_empty():
    m = replace(market(), collateral_reserves={WETH: 10**18})
    assert plan.liquidations("comet", replace(m, reserves=m.target_reserves), [], {}, ctx(10**12)) == []
    assert plan.liquidations("comet", m, [], {}, ctx(0)) == []
    assert plan.liquidations("comet", replace(m, collateral_reserves={}), [], {}, ctx(10**12)) == []
    assert plan.liquidations("comet", m, [], {}, ctx(10**12, gas_usd_e8=51 * 10**8)) == []  # gas eats it
    assert not plan.for_sale(replace(m, reserves=m.target_reserves)) and plan.for_sale(m)


def test_an_account_not_liquidatable_leaves_the_reserves_to_buy():
    m = replace(market(), collateral_reserves={WETH: 10**18})
    pos = Position("compound_v3", "comet", "0x00000000000000000000000000000000000000a1", 1, 0, 0, 0, 0,
                   Status.SAFE, True)
    # a position not liquidatable: nobody to absorb, so the reserves are what is bought
    (d,) = plan.liquidations("comet", m, [pos], {}, ctx(10**12))
    assert d.accounts == ()


def test_a_purchase_of_collateral_for_sale_waits_for_the_markets_liquidation_in_flight():
    """`make demo` showed it: an absorb + buy in flight (absorb mined, its buys not yet), the
    next tick saw the absorbed collateral for sale and sent a purchase of it beside the
    liquidation; one of the two then reverted (the liquidation absorbed at a loss). The
    executor now starts such a purchase only when no action of its market is in flight."""
    import asyncio

    from keeper.executors.actions import ActionExecutor
    from keeper.model import Liquidate

    m = replace(market(), collateral_reserves={WETH: 10**18}, reserves=0)
    (purchase,) = plan.liquidations("comet", m, [], {}, ctx(10**12))
    assert purchase.accounts == ()
    absorb = replace(purchase, accounts=("0x00000000000000000000000000000000000000a1",))

    async def submit(in_flight: set[str], decision: Liquidate) -> list:
        ex = object.__new__(ActionExecutor)
        ran: list = []

        async def run(d, adapter, market_, slots):
            ran.append((d.accounts, slots))
        ex.in_flight, ex.tasks = set(in_flight), set()
        ex.burst = type("NoBurst", (), {"takes": staticmethod(lambda d, adapter: None)})()
        ex._run = run
        ex.submit([decision], None, m)
        await asyncio.gather(*ex.tasks)
        return ran

    liquidating = {"comet:0x00000000000000000000000000000000000000a1"}
    assert asyncio.run(submit(liquidating, purchase)) == []  # waits for the liquidation
    assert asyncio.run(submit({"other:0x00000000000000000000000000000000000000a1"}, purchase)) == [
        ((), {"comet:protocol"})]  # another market's action does not hold it
    assert asyncio.run(submit(set(), purchase)) == [((), {"comet:protocol"})]
    # a liquidation is never held up by the market's other actions (only by its own account)
    assert asyncio.run(submit({"comet:protocol"}, absorb)) == [(absorb.accounts, liquidating)]
