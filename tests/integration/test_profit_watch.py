"""A sent liquidation that still succeeds but no longer pays is cancelled before it is mined
(keeper.executors.profit_watch, on the devnet with real signed transactions): its value is
read from the simulation's logs at the head, at that head's prices, minus gas at the
current fees."""

from __future__ import annotations

from keeper.devnet.api import get_price, set_price
from keeper.devnet.rpc import rpc
from tests.integration.test_approvals import _build, _nonce
from tests.integration.test_burst import _crash, _until


async def test_a_liquidation_that_no_longer_pays_is_cancelled_not_mined(devnet, w3, tmp_path):
    info = devnet.info
    due = await _crash(w3, info)
    plans = {p["address"].lower(): p for p in info.positions}
    # WBTC is all of their collateral and none of their debt: a WBTC price 1/100,000 of the
    # crash's leaves them liquidatable, but all they have left to seize is worth cents
    thin = {u for u in due if set(plans[u.lower()]["collateral"]) == {"WBTC"}
            and "WBTC" not in plans[u.lower()]["debt"]}
    assert thin, "the devnet has no WBTC-only borrower among the liquidatable ones"
    k = await _build(devnet, tmp_path, "live")
    try:
        gap = await _nonce(w3, info.liquidator)
        k.executor.tx.nonces.reset()
        k.executor.tx.nonces.seed(gap + 1)  # one nonce left out: the burst waits in the pool, unmined
        head = await k.rpc.block_number()
        await k.engine.index(head)
        await k.engine.full_scan(head)
        burst = k.executor.burst

        async def all_sent() -> bool:
            return len(burst.unconfirmed) == len(due)
        await _until(all_sent, "every liquidation sent")
        await set_price(w3, info, "WBTC", await get_price(w3, info, "WBTC") // 100_000)  # mined
        await k.engine.on_block(await k.rpc.block_number())  # the tick that learns the new prices

        def unprofitable() -> list[str]:
            return [why for why in burst.watch.cancels.values() if why.startswith("unprofitable")]

        async def thin_cancelled() -> bool:
            return len(unprofitable()) >= len(thin)
        await _until(thin_cancelled, "every liquidation that no longer pays replaced by a cancel")
        await rpc(w3, "evm_setAutomine", [False])
        await rpc(w3, "eth_sendTransaction", [{"from": info.liquidator, "to": info.liquidator,
                                               "nonce": hex(gap), "value": "0x0"}])  # the gap filled
        await rpc(w3, "evm_mine", [])
        await k.executor.drain()
        rows = k.store.query("SELECT account, result, detail FROM actions WHERE kind = 'liquidate'", ())
        block = await rpc(w3, "eth_getBlockByNumber", ["latest", True])
        mine = [tx for tx in block["transactions"] if tx["from"].lower() == info.liquidator.lower()]
        receipts = [await rpc(w3, "eth_getTransactionReceipt", [tx["hash"]]) for tx in mine]
    finally:
        await rpc(w3, "evm_setAutomine", [True])
        await k.close()
    by_account = {a.lower(): (result, detail) for a, result, detail in rows}
    for u in thin:
        result, detail = by_account[u.lower()]
        assert result == "lost" and detail.startswith("cancelled: unprofitable at block"), detail
        assert "< minimum 0" in detail
    # nothing of keeper's was mined to revert (the tick of the WBTC block liquidated the
    # borrowers it made liquidatable, in the same block); the cancels are 0-value self-transfers
    assert len(mine) >= 1 + len(due)
    assert all(int(r["status"], 16) == 1 for r in receipts)
    cancels = [tx for tx in mine[1:] if tx["to"].lower() == info.liquidator.lower()]
    assert len(cancels) == len(burst.watch.cancels) >= len(thin)
    assert all(tx["input"] in ("0x", "") and int(tx["value"], 16) == 0 for tx in cancels)
