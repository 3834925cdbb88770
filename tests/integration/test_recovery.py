"""Crash recovery finishes actions: a live keeper is killed (SIGKILL) right after it broadcast
a liquidation, before it read the receipt. The restart settles the journal and finishes the
action as a live one ends: its ``actions`` row with the realized profit, and its
``liquidated`` alert at a loopback webhook. Asserted on chain state, the store and the alert."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from collections.abc import AsyncIterator

import pytest_asyncio
from eth_utils import to_checksum_address

from keeper.chain.abi import addr_arg, call_data, topic, word
from keeper.config import load_config
from keeper.devnet.api import apply_price_change, get_price, set_price
from keeper.devnet.api import mint as mint_token
from keeper.devnet.comet import CometInfo, deploy_comet
from keeper.devnet.lifecycle import comet_config_toml
from keeper.devnet.rpc import rpc
from keeper.wiring import build_keeper
from tests.integration.test_keeper_actions import LIQUIDATOR_KEY, config, crash_and_fund, liquidations, nonce
from tests.notify_servers import HttpSink

HELPER = Path(__file__).with_name("_crash_keeper.py")
ROOT = Path(__file__).resolve().parents[2]


async def run_until_killed(path: Path, prefix: str, exact_step: bool = False) -> None:
    env = {**os.environ, "KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("KEEPER_RPC_URL", None)
    env.pop("KEEPER_RPC_URLS", None)
    proc = await asyncio.create_subprocess_exec(sys.executable, str(HELPER), str(path), prefix, "broadcast",
                                                "first" if exact_step else "any", env=env,
                                                cwd=str(ROOT), stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode == -9, err.decode()[-3000:]


async def settled(w3, who: str) -> None:
    """Until every transaction ``who`` sent is mined (bounded): automine lags the sends (a
    burst's batch, its follow-ups included) on a long chain."""
    for _ in range(100):
        if await nonce(w3, who) == int(await rpc(w3, "eth_getTransactionCount", [who, "pending"]), 16):
            return
        await asyncio.sleep(0.1)


async def test_a_liquidation_killed_after_broadcast_gets_its_row_profit_and_alert(devnet, w3, tmp_path):
    info = devnet.info
    await crash_and_fund(w3, info)
    sink = HttpSink()
    await sink.start()
    try:
        path = config(devnet, tmp_path, "\n[liquidator]\nenabled = true\n"
                      f'\n[[notify]]\nkind = "webhook"\nurl = "{sink.base_url}/hook"\n')
        start, n0 = int(await rpc(w3, "eth_blockNumber", []), 16), await nonce(w3, info.liquidator)

        await run_until_killed(path, "liq:")
        await settled(w3, info.liquidator)

        ours = [e for e in await liquidations(w3, info.pool, start)
                if e["liquidator"] == to_checksum_address(info.liquidator)]
        # mined before the kill (automine), never seen by the keeper; sends do not wait for
        # receipts, so under load a second one may have gone out before the kill landed
        assert ours
        victims = sorted(e["user"] for e in ours)
        n1 = await nonce(w3, info.liquidator)
        assert n1 > n0
        cfg = load_config(path, env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY})
        k = await build_keeper(cfg)  # reconcile + finish what the crash interrupted
        try:
            rows = k.store.query("SELECT action_key, result, expected, realized, tx_hash, account, protocol"
                                 " FROM actions WHERE kind = 'liquidate'")
            pending = k.store.query("SELECT action_key FROM action_pending")
            await k.notifications.deliver_due(time.time() + 1)
        finally:
            await k.close()
        assert await nonce(w3, info.liquidator) == n1  # nothing sent at the restart
        assert pending == []
        done = [r for r in rows if r[1] == "done"]
        assert sorted(r[5] for r in done) == victims, rows
        alerts = [json.loads(r.body) for r in sink.accepted("/hook")]
        liquidated = [a for a in alerts if a["kind"] == "liquidated"]
        assert sorted(a["account"] for a in liquidated) == victims, alerts
        for key, result, expected, realized, tx_hash, account, protocol in done:
            assert protocol == "aave_v3" and key.startswith("liq:") and tx_hash
            receipt = await rpc(w3, "eth_getTransactionReceipt", [tx_hash])
            assert int(receipt["status"], 16) == 1 and int(receipt["blockNumber"], 16) > start
            assert realized is not None and int(realized) > 0 and int(expected) > 0
            assert any(tx_hash in json.dumps(a) for a in liquidated if a["account"] == account)
    finally:
        await sink.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def comet(devnet, w3) -> AsyncIterator[CometInfo]:
    before = await rpc(w3, "evm_snapshot", [])
    try:
        yield await deploy_comet(w3, devnet.info, 12, 3)
    finally:
        await rpc(w3, "evm_revert", [before])


async def comet_logs(w3, comet: str, event: str, start: int, me: str) -> list[dict]:
    found = await rpc(w3, "eth_getLogs", [{"address": comet, "topics": ["0x" + topic(event).hex()],
                                           "fromBlock": hex(start), "toBlock": "latest"}])
    return [lg for lg in found if to_checksum_address("0x" + lg["topics"][1][-40:]) == me]


async def collateral_reserves(w3, comet: CometInfo, symbol: str) -> int:
    raw = await rpc(w3, "eth_call", [{"to": comet.comet, "data": "0x" + call_data(
        "getCollateralReserves(address)", addr_arg(comet.assets[symbol])).hex()}, "latest"])
    return word(bytes.fromhex(raw[2:]))


async def test_an_absorb_killed_before_its_purchases_buys_on_the_next_tick(devnet, w3, comet, tmp_path):
    """kill -9 right after the absorb's broadcast: its buyCollateral steps never start. The
    restart records the absorb; the next tick sees collateral for sale and nobody to absorb,
    buys it from fresh state, and records the profit."""
    info, me = devnet.info, to_checksum_address(devnet.info.liquidator)
    await mint_token(w3, info, "USDC", me, 10**8 * 10**6)
    start = int(await rpc(w3, "eth_blockNumber", []), 16)
    for symbol in ("WETH", "WBTC"):
        await set_price(w3, info, symbol, apply_price_change(await get_price(w3, info, symbol), "-35%"))
    path = config(devnet, tmp_path, comet_config_toml(comet) + "\n[liquidator]\nenabled = true\nmin_profit_base = 0\n")

    await run_until_killed(path, "liq:comet:", exact_step=True)
    await settled(w3, me)

    absorbed = await comet_logs(w3, comet.comet, "AbsorbDebt(address,address,uint256,uint256)", start, me)
    assert absorbed  # mined before the kill
    buy = "BuyCollateral(address,address,uint256,uint256)"
    assert await comet_logs(w3, comet.comet, buy, start, me) == []  # the purchases never started
    held = {s: await collateral_reserves(w3, comet, s) for s in ("WETH", "WBTC")}
    assert any(held.values())

    k = await build_keeper(load_config(path, env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY}))
    try:
        rows = k.store.query("SELECT action_key, result, realized FROM actions WHERE action_key LIKE 'liq:comet:%'")
        assert [r for _, r, _ in rows] == ["done"], rows  # the absorb, finished at start-up
        head = await k.rpc.block_number()
        await k.engine.index(head)
        await k.engine.full_scan(head)
        await k.executor.drain()
        rows = k.store.query("SELECT action_key, result, expected, realized FROM actions"
                             " WHERE action_key LIKE 'liq:comet:protocol:%'")
    finally:
        await k.close()
    bought = await comet_logs(w3, comet.comet, buy, start, me)
    assert bought, rows
    (key, result, expected, realized), = rows
    assert result == "done" and int(expected) > 0 and int(realized) > 0
    after = {s: await collateral_reserves(w3, comet, s) for s in ("WETH", "WBTC")}
    assert sum(after.values()) < sum(held.values())
