"""A price update seen after keeper's backrun of an earlier one was signed and sent
(keeper.executors.backrun_watch), on the devnet with real transactions, automine off: the
second update is ordered ahead of keeper's transactions in the block (a higher fee), and the
borrowers it heals would make keeper's liquidations revert. Seeing it, keeper simulates its
sent transactions behind both updates and replaces those that would fail by cancels before
the block: none of keeper's transactions reverts, the rest are liquidated in that block."""

from __future__ import annotations

from keeper.chain.abi import addr_arg, call_data, uint_arg, word
from keeper.devnet.api import apply_price_change, get_price
from keeper.devnet.rpc import rpc
from keeper.protocols.aave_v3 import encode as enc
from keeper.units import WAD
from tests.integration.test_backrun import _pending_nonce, _running, _until, liquidations
from tests.integration.test_keeper_actions import mint, send


async def _borrow(w3, info, who: str, collateral: str, amount: int, debt: str) -> None:
    """``who`` supplies ``amount`` of ``collateral`` and borrows 90% of what it may of ``debt``."""
    await mint(w3, info, collateral, who, amount)
    await send(w3, who, info.tokens[collateral], enc.approve(info.pool, 2**256 - 1))
    await send(w3, who, info.pool, enc.supply(info.tokens[collateral], amount, who))
    raw = await rpc(w3, "eth_call", [{"to": info.pool, "data": "0x" + enc.account_data(who).hex()}, "latest"])
    available = word(bytes.fromhex(raw[2:]), 2)  # base currency (USD e8)
    units = available * 9 // 10 * 10**info.decimals[debt] // await get_price(w3, info, debt)
    await send(w3, who, info.pool, call_data("borrow(address,uint256,uint256,uint16,address)",
                                             addr_arg(info.tokens[debt]), uint_arg(units), uint_arg(2),
                                             uint_arg(0), addr_arg(who)))


async def _below_one(w3, info, calls: list[dict]) -> set[str]:
    """The borrowers below 1.0 once ``calls`` (updates) apply, in the Pool's own view."""
    who = [*info.borrowers, *info.spare[:2]]
    views = [{"to": info.pool, "data": "0x" + enc.account_data(b).hex()} for b in who]
    sim = await rpc(w3, "eth_simulateV1", [{"blockStateCalls": [{"calls": calls + views}]}, "latest"])
    res = sim[0]["calls"][len(calls):]
    return {b for b, r in zip(who, res) if word(bytes.fromhex(r["returnData"][2:]), 5) < WAD}


async def test_an_update_seen_late_cancels_the_backrun_it_would_make_revert(devnet, w3, tmp_path):
    info = devnet.info
    # one borrower the second update heals (WETH collateral, WBTC debt), one it makes liquidatable
    await _borrow(w3, info, info.spare[0], "WETH", 10 * 10**18, "WBTC")
    await _borrow(w3, info, info.spare[1], "WBTC", 10**8, "USDC")
    oracle2 = info.spare[2]  # the WBTC feed's own transmitter (its updates are not behind WETH's nonce)
    await send(w3, info.deployer, info.feeds["WBTC"], call_data("transferOwnership(address)", addr_arg(oracle2)))
    async with _running(devnet, w3, tmp_path, "mempool") as (k, sub):
        start = int(await rpc(w3, "eth_blockNumber", []), 16)
        before = await _pending_nonce(w3, info.liquidator)
        calls = [{"from": who, "to": info.feeds[s], "gas": hex(200_000), "data": "0x" + call_data(
            "setAnswer(int256)", uint_arg(apply_price_change(await get_price(w3, info, s), "-35%"))).hex()}
            for s, who in (("WETH", info.deployer), ("WBTC", oracle2))]
        first = await _below_one(w3, info, calls[:1])  # the WETH update alone
        both = await _below_one(w3, info, calls)
        healed = first - both  # WETH collateral, WBTC debt: the WBTC update heals them
        assert healed and both - first, "the devnet has no borrower the second update heals or adds"
        h1 = await rpc(w3, "eth_sendTransaction", [calls[0]])

        async def sent(n: int) -> bool:
            return await _pending_nonce(w3, info.liquidator) - before >= n

        async def first_sent() -> bool:
            return await sent(len(first))
        await _until(first_sent, "the backrun of the first update")
        fee = int((await rpc(w3, "eth_getTransactionByHash", [h1]))["maxFeePerGas"], 16)
        # the second update, priced above the first: mined ahead of keeper's backrun
        h2 = await rpc(w3, "eth_sendTransaction", [{**calls[1], "maxFeePerGas": hex(2 * fee),
                                                    "maxPriorityFeePerGas": hex(fee)}])
        watch = sub.backrunner.sender.watch

        async def settled() -> bool:  # the cancels out, the second update's own backrun sent
            return len(watch.cancels) >= len(healed) and await sent(len(first | both))
        await _until(settled, "the cancels and the second backrun", tries=3000)
        await rpc(w3, "evm_mine", [])
        await k.executor.drain()
        rows = k.store.query("SELECT account, result, detail FROM actions WHERE kind = 'liquidate'", ())
        block = await rpc(w3, "eth_getBlockByNumber", [hex(start + 1), True])
        mine = [tx["hash"] for tx in block["transactions"] if tx["from"].lower() == info.liquidator.lower()]
        receipts = [await rpc(w3, "eth_getTransactionReceipt", [h]) for h in mine]
        done = [e for e in await liquidations(w3, info.pool, start + 1) if e["liquidator"] == info.liquidator]
        order = [tx["hash"] for tx in block["transactions"]]
    assert order.index(h2) < order.index(h1)  # the second update went first, as it would on a chain
    assert len(mine) == len(first | both) and all(int(r["status"], 16) == 1 for r in receipts)  # no revert
    assert sorted(e["user"] for e in done) == sorted(both)  # every one still liquidatable, in the block
    by_account = {a: (result, detail) for a, result, detail in rows}
    for u in healed:
        result, detail = by_account[u]
        assert result == "lost" and detail.startswith("cancelled: would revert behind 2 pending update(s)"), detail
