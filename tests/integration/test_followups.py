"""Follow-up liquidations of one account in one block, on the real Aave V3 Pools (3.0.2 on the
session devnet, 3.6 on its own anvil): the adapter's ``after_liquidation`` predicts the
account (and the 3.6 virtual balances) after keeper's liquidationCall to the wei, and the
follow-up planned on that prediction (keeper.followups) executes in the same block exactly
as planned. Each liquidation is mined in a block with the market's own timestamp (no
interest in between, after 90 days of it: indexes far from 1 ray), so what the chain reads
afterwards is what must match."""

from __future__ import annotations

from keeper.devnet.api import advance_time, get_price, set_price
from keeper.devnet.rpc import rpc
from keeper.followups import with_followups
from keeper.model import Liquidate
from keeper.prices import PriceBook
from keeper.protocols.base import PlanContext
from keeper.units import WAD
from tests.integration.devnet36 import _snapshot36, anvil36, devnet36, engine36, w3_36  # noqa: F401
from tests.integration.test_aave36 import _fund_liquidator
from tests.integration.test_keeper_actions import LIQUIDATION_CALL, pool_hf

TARGET_HF_BPS = 9_000  # below 0.95: 100% close factor, and one pair does not heal a two-pair account


def two_pair_borrower(info) -> str:
    """A borrower with WETH + WBTC collateral and USDC + DAI debt (the devnet's shape 4)."""
    for p in info.positions:
        if set(p["collateral"]) == {"WETH", "WBTC"} and set(p["debt"]) == {"USDC", "DAI"}:
            return p["address"]
    raise AssertionError("the devnet has no WETH+WBTC / USDC+DAI borrower")


async def push_to(w3, info, user: str, target_bps: int = TARGET_HF_BPS) -> None:
    """Scale WETH and WBTC together until ``user``'s health factor is about ``target_bps``
    (its debt is in stablecoins, so its HF is proportional to them)."""
    hf = await pool_hf(w3, info.pool, user)
    for symbol in ("WETH", "WBTC"):
        await set_price(w3, info, symbol, await get_price(w3, info, symbol) * target_bps * WAD // (10_000 * hf))


async def state(engine, user: str):
    """(market, the account, the Pool's health factor view) at the head, by keeper's reader."""
    block = await engine.rpc.block_number()
    await engine.index(block)
    await engine.full_scan(block)
    w = engine.watches[0]
    (view,) = await w.adapter.contract_health([user], block)
    return w.market, w.accounts[user], view


async def mine_together(w3, info, adapter, decisions: list[Liquidate], timestamp: int) -> list[dict]:
    """keeper's transactions for ``decisions``, in order, mined together in one block at
    ``timestamp``; their receipts."""
    await rpc(w3, "evm_setAutomine", [False])
    try:
        hashes = []
        for d in decisions:
            (step,) = adapter.encode(d, info.liquidator)
            hashes.append(await rpc(w3, "eth_sendTransaction", [{
                "from": info.liquidator, "to": step.to, "data": "0x" + step.data.hex(), "gas": hex(3_000_000)}]))
        await rpc(w3, "evm_setNextBlockTimestamp", [timestamp])
        await rpc(w3, "evm_mine", [])
    finally:
        await rpc(w3, "evm_setAutomine", [True])
    return [await rpc(w3, "eth_getTransactionReceipt", [h]) for h in hashes]


def event(receipt: dict) -> tuple[int, int]:
    (lg,) = [lg for lg in receipt["logs"] if lg["topics"][0] == "0x" + LIQUIDATION_CALL.hex()]
    data = bytes.fromhex(lg["data"][2:])
    return int.from_bytes(data[:32], "big"), int.from_bytes(data[32:64], "big")


async def follow_ups_match_the_chain(w3, info, engine) -> list[Liquidate]:
    wallet = await _fund_liquidator(w3, info)
    await advance_time(w3, 90 * 86_400)  # indexes well above 1 ray: the rounding directions show
    for symbol in ("USDC", "DAI"):  # the feeds answer again (else stale: unreliable, no action)
        await set_price(w3, info, symbol, await get_price(w3, info, symbol))
    user = two_pair_borrower(info)
    await push_to(w3, info, user)
    market, acct, view = await state(engine, user)
    assert view.liquidatable
    w = engine.watches[0]
    pos = w.positions[user]
    assert pos.reliable
    ctx = PlanContext(info.liquidator, wallet, 0, 0, PriceBook())
    decisions = with_followups(w.adapter, market, w.adapter.plan_liquidations(market, [pos], {user: acct}, ctx),
                               {user: acct}, ctx)
    assert len(decisions) >= 2 and [d.follows for d in decisions] == list(range(len(decisions)))
    predicted = [(market, acct)]
    for d in decisions:
        predicted.append(w.adapter.after_liquidation(*predicted[-1], d))
    assert all(p is not None for p in predicted)

    # the first alone: the account (and the market's virtual balances) as predicted, to the wei
    snapshot = await rpc(w3, "evm_snapshot", [])
    (receipt,) = await mine_together(w3, info, w.adapter, decisions[:1], market.timestamp)
    assert int(receipt["status"], 16) == 1
    assert event(receipt) == (decisions[0].quote[0].debt_to_repay, decisions[0].quote[0].collateral_to_receive)
    m1, a1, v1 = await state(engine, user)
    assert a1 == predicted[1][1]
    assert [r.virtual_underlying for r in m1.reserves] == [r.virtual_underlying for r in predicted[1][0].reserves]
    assert v1.liquidatable  # still: the follow-up is needed
    assert v1.health_factor_wad == w.adapter.evaluator(market).position(a1, engine.thresholds, False).health_factor_wad
    assert await rpc(w3, "evm_revert", [snapshot])

    # all of them in one block: each executes as planned on the state the previous one left
    receipts = await mine_together(w3, info, w.adapter, decisions, market.timestamp)
    assert [int(r["status"], 16) for r in receipts] == [1] * len(decisions)
    assert len({r["blockNumber"] for r in receipts}) == 1
    assert [event(r) for r in receipts] == [(d.quote[0].debt_to_repay, d.quote[0].collateral_to_receive)
                                            for d in decisions]
    m_end, a_end, v_end = await state(engine, user)
    assert a_end == predicted[-1][1]
    assert [r.virtual_underlying for r in m_end.reserves] == [r.virtual_underlying for r in predicted[-1][0].reserves]
    assert v_end.health_factor_wad == w.adapter.evaluator(market).position(a_end, engine.thresholds, False).health_factor_wad
    return decisions


async def test_follow_up_predicted_to_the_wei_on_aave_302(devnet, engine, w3):
    decisions = await follow_ups_match_the_chain(w3, devnet.info, engine)
    pairs = {(d.quote[0].collateral_asset, d.quote[0].debt_asset) for d in decisions}
    assert len(pairs) == len(decisions)  # each one takes another pair


async def test_follow_up_predicted_to_the_wei_on_aave_36(devnet36, engine36, w3_36):
    decisions = await follow_ups_match_the_chain(w3_36, devnet36.info, engine36)
    assert all(d.quote[0].debt_to_cover is not None for d in decisions)  # 3.6 quotes
