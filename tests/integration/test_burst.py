"""The lean send path (keeper.executors.burst) on the devnet: a tick's liquidations cost two
round trips in all (one batch of simulations and fee reads; one batch of sends),
whatever their number; a liquidation someone else took while keeper's transaction waited is
cancelled (same nonce, a self-transfer) instead of being mined to revert."""

from __future__ import annotations

import asyncio

import pytest

from keeper.devnet.api import apply_price_change, get_price, set_price
from keeper.devnet.rpc import rpc
from keeper.model import Liquidate
from keeper.protocols.aave_v3 import encode as enc
from keeper.units import WAD
from tests.integration.test_approvals import _build, _nonce
from tests.integration.test_keeper_actions import liquidations, mint, pool_hf

GWEI = 10**9
FUNDS = (("USDC", 10**7 * 10**6), ("DAI", 10**7 * 10**18), ("WETH", 10**4 * 10**18), ("WBTC", 500 * 10**8))


async def _crash(w3, info) -> list[str]:
    for symbol, amount in FUNDS:
        await mint(w3, info, symbol, info.liquidator, amount)
    for symbol in ("WETH", "WBTC"):
        await set_price(w3, info, symbol, apply_price_change(await get_price(w3, info, symbol), "-35%"))
    return [b for b in info.borrowers if await pool_hf(w3, info.pool, b) < WAD]


async def _pending_nonce(w3, address: str) -> int:
    return int(await rpc(w3, "eth_getTransactionCount", [address, "pending"]), 16)


async def _until(check, what: str) -> None:
    for _ in range(600):  # bounded: 60 s
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never: {what}")


async def decided(k):
    """After a full scan, the liquidations keeper decides, not sent: (watch, decisions, the
    burst's batch of them)."""
    head = await k.rpc.block_number()
    await k.engine.index(head)
    k.executor.submit = lambda decisions, adapter, market: 0  # decide now, send by hand
    await k.engine.full_scan(head)
    w = k.engine.watches[0]
    decisions = [d for d in await k.engine.responder.after_tick(w, w.market, []) if isinstance(d, Liquidate)]
    return w, decisions, [(d, {f"{d.market}:{d.accounts[0]}"}, k.executor.burst.takes(d, w.adapter)) for d in decisions]


@pytest.mark.parametrize("simulate_v1", [True, False], ids=["eth_simulateV1", "eth_call+estimate"])
async def test_a_ticks_liquidations_cost_one_batch_and_one_send(devnet, w3, tmp_path, simulate_v1):
    info = devnet.info
    due = await _crash(w3, info)
    assert len(due) >= 3
    k = await _build(devnet, tmp_path, "live")
    try:
        w, decisions, batch = await decided(k)
        assert sorted(a for d in decisions for a in d.accounts) == sorted(due)
        burst = k.executor.burst
        burst.simulate_v1 = simulate_v1  # False: as on a node without eth_simulateV1
        assert all(step is not None for _, _, step in batch)  # approvals are in place: lean path
        k.executor.tx.chain_id = await k.rpc.chain_id()
        await rpc(w3, "evm_setAutomine", [False])
        start = int(await rpc(w3, "eth_blockNumber", []), 16)
        before, sent_before = k.rpc.counter.http_requests, await _nonce(w3, info.liquidator)
        await burst.run(batch, w.adapter, w.market)
        # one batch (fees, nonce, the simulations; without eth_simulateV1 a second one), one send
        assert k.rpc.counter.http_requests - before == (2 if simulate_v1 else 3)
        assert await _pending_nonce(w3, info.liquidator) == sent_before + len(due)
        await rpc(w3, "evm_mine", [])
        await k.executor.drain()
        rows = k.store.query("SELECT result FROM actions WHERE kind = 'liquidate'", ())
    finally:
        await rpc(w3, "evm_setAutomine", [True])
        await k.close()
    assert [r[0] for r in rows] == ["done"] * len(due)
    done = [e for e in await liquidations(w3, info.pool, start + 1) if e["liquidator"] == info.liquidator]
    assert sorted(e["user"] for e in done) == sorted(due)


async def test_a_liquidation_taken_by_another_is_cancelled_not_mined_to_revert(devnet, w3, tmp_path):
    info = devnet.info
    due = await _crash(w3, info)
    rival = info.spare[0]
    for symbol, amount in FUNDS:
        await mint(w3, info, symbol, rival, amount)
        await rpc(w3, "eth_sendTransaction", [{"from": rival, "to": info.tokens[symbol],
                                               "data": "0x" + enc.approve(info.pool, 2**256 - 1).hex()}])
    k = await _build(devnet, tmp_path, "live")
    try:
        await rpc(w3, "evm_setAutomine", [False])
        start = int(await rpc(w3, "eth_blockNumber", []), 16)
        sent_before = await _nonce(w3, info.liquidator)
        head = await k.rpc.block_number()
        await k.engine.index(head)
        await k.engine.full_scan(head)  # the burst: keeper's liquidations wait in the pool

        async def all_sent() -> bool:
            return await _pending_nonce(w3, info.liquidator) - sent_before == len(due)
        await _until(all_sent, "every liquidation sent")
        # the next block's base fee is above keeper's maxFeePerGas, below the rival's: the
        # rival liquidates every account, keeper's transactions stay in the pool
        await rpc(w3, "anvil_setNextBlockBaseFeePerGas", [hex(50 * GWEI)])
        plans = {p["address"].lower(): p for p in info.positions}
        for user in due:
            p = plans[user.lower()]
            data = enc.liquidation_call(info.tokens[next(iter(p["collateral"]))],
                                        info.tokens[next(iter(p["debt"]))], user, 2**256 - 1)
            await rpc(w3, "eth_sendTransaction", [{"from": rival, "to": info.pool, "data": "0x" + data.hex(),
                                                   "gas": hex(1_000_000), "maxFeePerGas": hex(500 * GWEI),
                                                   "maxPriorityFeePerGas": hex(GWEI)}])
        await rpc(w3, "evm_mine", [])
        assert await _nonce(w3, info.liquidator) == sent_before  # none of keeper's was mined

        async def all_cancelled() -> bool:
            return len(k.executor.burst.watch.cancels) == len(due)
        await _until(all_cancelled, "every stale liquidation replaced by a cancel")
        await rpc(w3, "evm_mine", [])
        await k.executor.drain()
        rows = k.store.query("SELECT result, detail FROM actions WHERE kind = 'liquidate'", ())
        end = int(await rpc(w3, "eth_blockNumber", []), 16)
        mined = []
        for n in range(start + 1, end + 1):
            block = await rpc(w3, "eth_getBlockByNumber", [hex(n), True])
            mined += [tx for tx in block["transactions"] if tx["from"].lower() == info.liquidator.lower()]
    finally:
        await rpc(w3, "evm_setAutomine", [True])
        await k.close()
    assert len(rows) == len(due)
    assert all(r[0] == "lost" and r[1].startswith("cancelled: would revert") for r in rows)
    # keeper's nonces went to self-transfers: nothing of keeper's reached the Pool
    assert len(mined) == len(due)
    assert all(tx["to"].lower() == info.liquidator.lower() and tx["input"] in ("0x", "") for tx in mined)


async def test_an_account_in_flight_waits_until_its_plan_saw_the_first_liquidation(devnet, w3, tmp_path):
    """Busy only until broadcast: a later tick may liquidate the account again, but only once
    its first liquidation is mined at or before the new decision's block."""
    info = devnet.info
    due = await _crash(w3, info)
    k = await _build(devnet, tmp_path, "live")
    try:
        await rpc(w3, "evm_setAutomine", [False])
        gap = await _nonce(w3, info.liquidator)
        k.executor.tx.nonces.reset()
        k.executor.tx.nonces.seed(gap + 1)  # one nonce left out: the burst waits in the pool, unmined
        head = await k.rpc.block_number()
        await k.engine.index(head)
        await k.engine.full_scan(head)

        async def all_sent() -> bool:
            return len(k.executor.burst.unconfirmed) == len(due)
        await _until(all_sent, "every liquidation sent")
        assert not k.executor.in_flight  # busy only until broadcast
        await rpc(w3, "evm_mine", [])  # a block without them: the next tick's plans cannot have seen them
        await k.engine.full_scan(head + 1)
        rows = k.store.query("SELECT COUNT(*) FROM tx_journal WHERE action_key LIKE ?", (f"liq:%:{head + 1}",))
        assert rows[0][0] == 0  # deferred: nothing signed for those accounts
        assert not k.executor.burst.watch.cancels  # still liquidatable: nothing is stale
        # the gap filled: the first liquidations are mined (the waits end)
        await rpc(w3, "eth_sendTransaction", [{"from": info.liquidator, "to": info.liquidator,
                                               "nonce": hex(gap), "value": "0x0"}])
        await rpc(w3, "evm_mine", [])
        assert await _nonce(w3, info.liquidator) == gap + 1 + len(due)
    finally:
        await rpc(w3, "evm_setAutomine", [True])
        await k.executor.drain()
        await k.close()
