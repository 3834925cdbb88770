"""The send path after a crash: all liquidations of one tick are broadcast before the first is
mined (consecutive nonces, nothing waits for a receipt), so they land in one block; the one
with the larger expected profit bids the higher maxFeePerGas."""

from __future__ import annotations

import asyncio

from keeper.devnet.api import apply_price_change, get_price, set_price
from keeper.devnet.rpc import rpc
from keeper.units import WAD
from tests.integration.test_approvals import _build, _nonce
from tests.integration.test_keeper_actions import liquidations, mint, pool_hf


async def test_a_ticks_liquidations_are_all_sent_before_one_is_mined(devnet, w3, tmp_path):
    info = devnet.info
    for symbol, amount in (("USDC", 10**7 * 10**6), ("DAI", 10**7 * 10**18), ("WETH", 10**4 * 10**18),
                           ("WBTC", 500 * 10**8)):
        await mint(w3, info, symbol, info.liquidator, amount)
    path = tmp_path / "bid"
    path.mkdir()
    k = await _build(devnet, path, "live", extra="bid_share_bps = 100\n")  # approvals at start-up
    try:
        for symbol in ("WETH", "WBTC"):
            await set_price(w3, info, symbol, apply_price_change(await get_price(w3, info, symbol), "-35%"))
        start = int(await rpc(w3, "eth_blockNumber", []), 16)
        due = [b for b in info.borrowers if await pool_hf(w3, info.pool, b) < WAD]
        assert len(due) >= 3
        sent_before = await _nonce(w3, info.liquidator)
        await rpc(w3, "evm_setAutomine", [False])
        head = await k.rpc.block_number()
        await k.engine.index(head)
        await k.engine.full_scan(head)
        for _ in range(1000):  # bounded: until every decision's tx waits in the pool
            pending = int(await rpc(w3, "eth_getTransactionCount", [info.liquidator, "pending"]), 16)
            if pending - sent_before >= len(due):
                break
            await asyncio.sleep(0.01)
        assert pending - sent_before == len(due), "not all liquidations were sent before a block"
        txs = (await rpc(w3, "txpool_content", []))["pending"]
        ours = next(v for a, v in txs.items() if a.lower() == info.liquidator.lower())
        assert sorted(int(n) for n in ours) == list(range(sent_before, sent_before + len(due)))
        await rpc(w3, "evm_mine", [])
        await k.executor.drain()
        rows = k.store.query("SELECT action_key, expected FROM actions WHERE kind = 'liquidate'", ())
    finally:
        await rpc(w3, "evm_setAutomine", [True])
        await k.close()
    done = [e for e in await liquidations(w3, info.pool, start + 1) if e["liquidator"] == info.liquidator]
    assert sorted(e["user"] for e in done) == sorted(due)
    blocks = {int(lg["blockNumber"], 16) for lg in await rpc(w3, "eth_getLogs", [{
        "address": info.pool, "fromBlock": hex(start + 1), "toBlock": "latest"}])}
    assert len(blocks) == 1  # one block holds them all
    # the bid: expected profit ranks maxFeePerGas (the block orders by it on anvil)
    expected = {r[0].split(":")[2]: int(r[1]) for r in rows}
    fees = {}
    for tx in (await rpc(w3, "eth_getBlockByNumber", [hex(next(iter(blocks))), True]))["transactions"]:
        if tx["from"].lower() == info.liquidator.lower():
            user = "0x" + tx["input"][2 + 8 + 64 * 2 + 24:2 + 8 + 64 * 3]
            fees[user.lower()] = int(tx["maxFeePerGas"], 16)
    by_profit = sorted(expected, key=lambda u: expected[u])
    assert [fees[u.lower()] for u in by_profit] == sorted(fees[u.lower()] for u in by_profit)
    assert len(set(fees.values())) > 1
