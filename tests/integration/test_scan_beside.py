"""The safety-net scan beside the block path (Engine.scan_beside, Runner.scan), on the Aave
V3 devnet: block ticks run while the scan reads; an account a tick re-read after the scan's
block keeps its newer state; a crash mid-scan is seen at its own block, not after the scan.
"""

from __future__ import annotations

import asyncio


from keeper.devnet.api import get_price, mint, set_price
from keeper.devnet.artifacts import load_aave
from keeper.devnet.rpc import calldata, rpc, wait_receipt
from keeper.model import Status
from keeper.runner import Runner
from keeper.units import UINT256_MAX

POOL_ABI = load_aave("Pool").abi
ERC20_ABI = load_aave("MintableERC20").abi


async def _send(w3, sender: str, to: str, data: str) -> int:
    tx = await rpc(w3, "eth_sendTransaction", [{"from": sender, "to": to, "data": data, "gas": hex(3_000_000)}])
    receipt = await wait_receipt(w3, tx)
    assert int(receipt["status"], 16) == 1
    return int(receipt["blockNumber"], 16)


async def supply_for(w3, info, account: str) -> int:
    """Supply WETH on ``account``'s behalf from a spare wallet: a Supply event naming it."""
    spare, weth = info.spare[0], info.tokens["WETH"]
    await mint(w3, info, "WETH", spare, 10**18)
    await _send(w3, spare, weth, calldata(ERC20_ABI, "approve", [info.pool, UINT256_MAX]))
    return await _send(w3, spare, info.pool, calldata(POOL_ABI, "supply", [weth, 10**18, account, 0]))


def gate_reads(adapter) -> asyncio.Event:
    """Hold the scan's account reads until the returned event is set (a slow node)."""
    gate = asyncio.Event()
    real = adapter.iter_accounts

    async def gated(accounts, market):
        async for part in real(accounts, market):
            await gate.wait()
            yield part
    adapter.iter_accounts = gated
    return gate


async def pool_hf(w, accounts, block) -> dict[str, int]:
    views = await w.adapter.pool_account_data(accounts, block)
    return {a: v.health_factor_wad for a, v in zip(accounts, views, strict=True)}


def hf(p) -> int:
    return UINT256_MAX if p.health_factor_wad is None else p.health_factor_wad


async def test_block_ticks_run_while_the_scan_reads_and_newer_state_is_kept(devnet, engine, w3, monkeypatch):
    monkeypatch.setattr("keeper.engine.MERGE_SLICE", 7)  # parts merged in slices, as at scale
    block = await engine.rpc.block_number()
    await engine.index(block)
    await engine.full_scan(block)
    w = engine.watches[0]
    touched, lost = devnet.info.borrowers[0], devnet.info.borrowers[1]
    del w.accounts[lost], w.positions[lost]  # something the block path missed: the scan repairs it
    lock = asyncio.Lock()
    gate = gate_reads(w.adapter)
    scan = asyncio.create_task(engine.scan_beside(lock))
    await asyncio.sleep(0)  # the scan pins its block (S = block) and starts reading
    assert w.scan_block == block
    # blocks after S, applied while the scan still reads: a supply for one account, a price move
    b1 = await supply_for(w3, devnet.info, touched)
    old = await get_price(w3, devnet.info, "WETH")
    b2 = (await set_price(w3, devnet.info, "WETH", old * 9 // 10)).block
    async with lock:  # as the runner's block tick holds it
        await engine.on_block(b2)
    assert w.last_block == b2 and w.fresh.get(touched) == b2 > b1 > block
    assert not scan.done()
    gate.set()
    merged = await asyncio.wait_for(scan, 120)
    assert merged == len(w.tracked) - 1  # every account but the one a tick re-read after S
    assert w.scan_block is None and not w.fresh
    assert lost in w.accounts
    # every position now is the Pool's at b2, the touched one included (the scan read it at S,
    # before its supply: had that older read won, its health factor would be the old one)
    accounts = sorted(w.positions)
    truth = await pool_hf(w, accounts, b2)
    assert {a: hf(w.positions[a]) for a in accounts} == truth
    assert all(w.positions[a].block == b2 for a in accounts)


async def test_a_crash_mid_scan_is_seen_at_its_block_not_after_the_scan(devnet, engine, w3):
    runner = Runner(engine, 3600, 3600, 3600)
    await runner.scan()  # the first scan: under the lock, nothing in memory before it
    w = engine.watches[0]
    assert w.market is not None
    gate = gate_reads(w.adapter)
    scan = asyncio.create_task(runner.scan())  # the safety net: beside the block path
    for _ in range(500):  # bounded: until it has pinned its block (after discovery)
        if w.scan_block is not None:
            break
        await asyncio.sleep(0.01)
    assert w.scan_block is not None
    for symbol in ("WETH", "WBTC"):
        old = await get_price(w3, devnet.info, symbol)
        crash = (await set_price(w3, devnet.info, symbol, old * 6 // 10)).block
    await asyncio.wait_for(runner.block(), 60)  # the poll: not skipped, not waiting for the scan
    assert runner.head == crash and not scan.done()
    liquidatable = {a for a, p in w.positions.items() if p.status == Status.LIQUIDATABLE}
    truth = await pool_hf(w, sorted(w.positions), crash)
    assert liquidatable == {a for a, h in truth.items() if h < 10**18}
    assert liquidatable, "the crash made no position liquidatable: the test shows nothing"
    assert all(w.positions[a].block == crash for a in liquidatable)
    gate.set()
    await asyncio.wait_for(scan, 120)
    assert runner.skipped == 0 and w.scan_block is None
