"""The backrun: a pending ``setAnswer`` that crashes WETH and WBTC is seen in the node's pool
(eth_subscribe newPendingTransactions over WebSocket), the liquidations it causes are planned
on the market with the new prices, simulated behind the update (eth_simulateV1) and sent,
signed for real, so that they are mined in the update's own block, right after it: through
the public pool (fees matched to the update's) and as a bundle through the project's own
loopback relay (keeper.devnet.relay), which builds the block."""

from __future__ import annotations

import asyncio
import contextlib

from keeper import backrun
from eth_utils import to_checksum_address

from keeper.chain.abi import call_data, uint_arg, word
from keeper.devnet.api import apply_price_change, get_price
from keeper.devnet.relay import Relay
from keeper.devnet.rpc import rpc
from keeper.protocols.aave_v3 import encode as enc
from keeper.units import WAD
from tests.integration.test_approvals import _build
from tests.integration.test_keeper_actions import LIQUIDATION_CALL, mint

MOVED = ("WETH", "WBTC")


async def _funded(w3, info) -> None:
    for symbol, amount in (("USDC", 10**7 * 10**6), ("DAI", 10**7 * 10**18), ("WETH", 10**4 * 10**18),
                           ("WBTC", 500 * 10**8)):
        await mint(w3, info, symbol, info.liquidator, amount)


def _extra(devnet, submitter: str, relay_url: str = "") -> str:
    return (f'\n[backrun]\nenabled = true\nsubmitter = "{submitter}"\n'
            + (f'relay_url = "{relay_url}"\n' if relay_url else ""))


async def _keeper(devnet, tmp_path, submitter: str, relay_url: str = ""):
    """A live keeper with [chain] ws_url and [backrun], its state read at the head."""
    ws = devnet.rpc_url.replace("http://", "ws://")
    text = devnet.config_path.read_text().replace("[chain]\n", f'[chain]\nws_url = "{ws}"\n', 1)
    cfg_dir = tmp_path / submitter
    cfg_dir.mkdir()
    devnet_ws = type(devnet)(devnet.info, devnet.rpc_url, cfg_dir / "keeper.toml", devnet.anvil)
    devnet_ws.config_path.write_text(text)
    k = await _build(devnet_ws, cfg_dir, "live", extra=_extra(devnet, submitter, relay_url))
    head = await k.rpc.block_number()
    await k.engine.index(head)
    await k.engine.full_scan(head)
    return k, backrun.build(k.cfg, k)


async def _crash_pending(w3, info) -> tuple[list[str], list[str]]:
    """The oracle's updates, sent to the pool and left there (automine is off), and the
    borrowers below 1.0 once they apply (eth_simulateV1 of the updates, then the Pool's view)."""
    hashes, calls = [], []
    for symbol in MOVED:
        new = apply_price_change(await get_price(w3, info, symbol), "-35%")
        call = {"from": info.deployer, "to": info.feeds[symbol], "gas": hex(200_000),
                "data": "0x" + call_data("setAnswer(int256)", uint_arg(new)).hex()}
        calls.append(call)
    views = [{"to": info.pool, "data": "0x" + enc.account_data(b).hex()} for b in info.borrowers]
    sim = await rpc(w3, "eth_simulateV1", [{"blockStateCalls": [{"calls": calls + views}]}, "latest"])
    res = sim[0]["calls"][len(calls):]
    due = [b for b, r in zip(info.borrowers, res) if word(bytes.fromhex(r["returnData"][2:]), 5) < WAD]
    for call in calls:
        hashes.append(await rpc(w3, "eth_sendTransaction", [call]))
    return hashes, due


async def liquidations(w3, pool: str, from_block: int) -> list[dict]:
    logs = await rpc(w3, "eth_getLogs", [{"address": pool, "topics": ["0x" + LIQUIDATION_CALL.hex()],
                                          "fromBlock": hex(from_block), "toBlock": "latest"}])
    return [{"user": to_checksum_address("0x" + lg["topics"][3][-40:]), "block": int(lg["blockNumber"], 16),
             "liquidator": to_checksum_address("0x" + lg["data"][2 + 64 * 2 + 24:2 + 64 * 3])} for lg in logs]


async def _until(cond, what: str, tries: int = 1000) -> None:
    for _ in range(tries):  # bounded
        if await cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def _pending_nonce(w3, address: str) -> int:
    return int(await rpc(w3, "eth_getTransactionCount", [address, "pending"]), 16)


def _ours_follow(block: dict, updates: list[str], me: str) -> list[str]:
    """Keeper's txs in ``block``, checked to come right behind the updates: from the first
    update on, the block holds only the updates and keeper's liquidations (each one behind
    the updates it was simulated with: with two updates, some may sit between them)."""
    order = [tx["hash"].lower() for tx in block["transactions"]]
    senders = {tx["hash"].lower(): tx["from"].lower() for tx in block["transactions"]}
    ours = [h for h in order if senders[h] == me.lower()]
    first = min(order.index(h.lower()) for h in updates)
    assert sorted(order[first:]) == sorted([*ours, *(h.lower() for h in updates)]), \
        "something else sits between the updates and keeper's liquidations"
    assert order.index(ours[0]) > first
    return ours


@contextlib.asynccontextmanager
async def _running(devnet, w3, tmp_path, submitter: str, relay_url: str = ""):
    """A live keeper with its pending-transaction subscription running, automine off."""
    await _funded(w3, devnet.info)
    k, sub = await _keeper(devnet, tmp_path, submitter, relay_url)
    stop = asyncio.Event()
    task = asyncio.create_task(sub.run(stop))
    try:
        await asyncio.wait_for(sub.connected.wait(), 10)
        await rpc(w3, "evm_setAutomine", [False])
        yield k, sub
    finally:
        await rpc(w3, "evm_setAutomine", [True])
        stop.set()
        await task
        await k.close()


async def _in_block_behind(w3, info, b: int, updates: list[str], due: list[str], rows) -> None:
    """Every due borrower liquidated by keeper in block ``b``, right behind the updates."""
    done = [e for e in await liquidations(w3, info.pool, b) if e["liquidator"] == info.liquidator]
    assert sorted(e["user"] for e in done) == sorted(due)
    assert {e["block"] for e in done} == {b}  # the update's own block
    block = await rpc(w3, "eth_getBlockByNumber", [hex(b), True])
    assert len(_ours_follow(block, updates, info.liquidator)) == len(due)
    for h in updates:
        assert int((await rpc(w3, "eth_getTransactionReceipt", [h]))["status"], 16) == 1
    assert [r[0] for r in rows] == ["done"] * len(due)


async def test_pending_crash_is_backrun_in_its_own_block_through_the_pool(devnet, w3, tmp_path):
    info = devnet.info
    async with _running(devnet, w3, tmp_path, "mempool") as (k, _sub):
        start = int(await rpc(w3, "eth_blockNumber", []), 16)
        before = await _pending_nonce(w3, info.liquidator)
        updates, due = await _crash_pending(w3, info)
        assert len(due) >= 3
        # every liquidatable borrower's liquidation waits in the pool before the block is made
        await _until(lambda: _sent(w3, info.liquidator, before, len(due)), "the backrun's sends")
        await rpc(w3, "evm_mine", [])
        await k.executor.drain()
        rows = k.store.query("SELECT result FROM actions WHERE kind = 'liquidate'", ())
    await _in_block_behind(w3, info, start + 1, updates, due, rows)


async def _sent(w3, who: str, before: int, n: int) -> bool:
    return await _pending_nonce(w3, who) - before >= n


async def test_a_pending_rise_sends_nothing(devnet, w3, tmp_path):
    info = devnet.info
    async with _running(devnet, w3, tmp_path, "mempool") as (k, sub):
        before = await _pending_nonce(w3, info.liquidator)
        new = apply_price_change(await get_price(w3, info, "WETH"), "+5%")
        await rpc(w3, "eth_sendTransaction", [{"from": info.deployer, "to": info.feeds["WETH"], "gas": hex(200_000),
                                                "data": "0x" + call_data("setAnswer(int256)", uint_arg(new)).hex()}])

        async def handled() -> bool:
            return bool(sub.backrunner.pending) and not sub.backrunner.tasks
        await _until(handled, "the update to be handled")
        assert sub.backrunner.planned == 0
        assert await _pending_nonce(w3, info.liquidator) == before
        await rpc(w3, "evm_mine", [])


async def test_pending_crash_is_backrun_as_a_bundle_through_the_local_relay(devnet, w3, tmp_path):
    info = devnet.info
    relay = Relay(devnet.rpc_url)
    url = await relay.start()
    try:
        async with _running(devnet, w3, tmp_path, "bundle", url) as (k, _sub):
            before = await _pending_nonce(w3, info.liquidator)
            updates, due = await _crash_pending(w3, info)
            assert len(due) >= 3

            async def bundled() -> bool:
                # one bundle: the second update's backrun is merged into the first one's
                return [len(b.txs) for bs in relay.bundles.values() for b in bs] == [len(due) + len(updates)]
            await _until(bundled, "the bundle at the relay")
            # nothing of keeper's is in the public pool: a bundle is private
            assert await _pending_nonce(w3, info.liquidator) == before
            b = await relay.build()
            await k.executor.drain()
            rows = k.store.query("SELECT result FROM actions WHERE kind = 'liquidate'", ())
    finally:
        await relay.close()
    assert relay.rejected == [] and relay.split == []
    assert len(relay.included) == 1
    await _in_block_behind(w3, info, b, updates, due, rows)
