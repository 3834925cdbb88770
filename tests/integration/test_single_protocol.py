"""A keeper that watches one protocol only, no Aave market: it prices its gas from the
configured USD feeds ([prices]), liquidates every liquidatable borrower after a crash, and
each liquidation raises a ``liquidated`` alert at a real loopback webhook.

Truth is the protocol's own verdict at the crash block: Morpho Blue's ``liquidate`` health
check (simulated), Comet's ``isLiquidatable``; the liquidations are its own events."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest_asyncio
from eth_utils import to_checksum_address

from keeper.config import load_config
from keeper.devnet.api import apply_price_change, get_price, mint, set_price
from keeper.devnet.comet import CometInfo
from keeper.devnet.lifecycle import comet_config_toml, morpho_config_toml
from keeper.devnet.morpho import MorphoInfo, follow_feed
from keeper.devnet.rpc import rpc
from keeper.devnet.state import chain_config_toml
from keeper.wiring import build_keeper
from tests.integration.conftest import deployed, morpho_and_comet
from tests.integration.test_all_protocols import COMET_ABSORB, LIQUIDATOR_KEY, MORPHO_LIQUIDATE
from tests.notify_servers import HttpSink


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def others(devnet, w3) -> AsyncIterator[tuple[MorphoInfo, CometInfo]]:
    async with deployed(w3, lambda: morpho_and_comet(w3, devnet.info, 16, 5)) as both:
        yield both


@pytest_asyncio.fixture(loop_scope="session")
async def sink() -> AsyncIterator[HttpSink]:
    server = HttpSink()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def crash(w3, info, minfo) -> int:
    me = to_checksum_address(info.liquidator)
    for symbol, amount in (("USDC", 10**8 * 10**6), ("WETH", 10**4 * 10**18), ("WBTC", 500 * 10**8)):
        await mint(w3, info, symbol, me, amount)
    start = int(await rpc(w3, "eth_blockNumber", []), 16)
    for symbol in ("WETH", "WBTC"):
        change = await set_price(w3, info, symbol, apply_price_change(await get_price(w3, info, symbol), "-30%"))
        await follow_feed(w3, minfo, symbol, change.old_e8, change.new_e8)
    return start


async def run_once(devnet, tmp_path, market_toml: str, hook: str):
    """One keeper (live) over ``market_toml`` alone: index, full scan, act, deliver alerts.
    Returns (the protocol's liquidatable set before the keeper acted, action rows)."""
    path = tmp_path / "keeper.toml"
    path.write_text('mode = "live"\n' + chain_config_toml(devnet.info) + market_toml
                    + f'\n[store]\npath = "{tmp_path / "k.sqlite"}"\n'
                    "\n[liquidator]\nenabled = true\nmin_profit_base = 0\n"
                    f'\n[[notify]]\nkind = "webhook"\nurl = "{hook}"\nstatuses = ["liquidatable"]\n')
    k = await build_keeper(load_config(path, env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY}))
    try:
        head = await k.rpc.block_number()
        await k.engine.index(head)
        truth = set()
        for w in k.engine.watches:
            views = await w.adapter.contract_health(sorted(w.tracked), head)
            truth |= {v.account for v in views if v.liquidatable}
        await k.engine.full_scan(head)
        await k.executor.drain()
        await k.notifications.deliver_due(time.time() + 1)
        rows = k.store.query("SELECT action_key, result, expected, realized, detail FROM actions")
    finally:
        await k.close()
    return truth, rows


async def events(w3, address: str, event: bytes, start: int) -> list[dict]:
    return await rpc(w3, "eth_getLogs", [{"address": address, "topics": ["0x" + event.hex()],
                                          "fromBlock": hex(start + 1), "toBlock": "latest"}])


def liquidated_alerts(sink: HttpSink) -> dict[str, dict]:
    bodies = [json.loads(r.body) for r in sink.accepted("/hook")]
    return {b["account"]: b for b in bodies if b["kind"] == "liquidated"}


async def test_morpho_only_keeper_liquidates_every_liquidatable_borrower(devnet, w3, others, sink, tmp_path):
    minfo, _ = others
    start = await crash(w3, devnet.info, minfo)
    truth, rows = await run_once(devnet, tmp_path, morpho_config_toml(minfo), sink.base_url + "/hook")
    me = to_checksum_address(devnet.info.liquidator)
    done = {to_checksum_address("0x" + lg["topics"][3][-40:])
            for lg in await events(w3, minfo.morpho, MORPHO_LIQUIDATE, start)
            if to_checksum_address("0x" + lg["topics"][2][-40:]) == me}
    assert len(truth) >= 2, "the crash should make Morpho borrowers liquidatable"
    assert done == truth, rows
    assert all(r == "done" for _, r, *_ in rows), rows
    assert all(int(realized) > 0 for _, _, _, realized, _ in rows), rows  # USD e8 after gas
    alerts = liquidated_alerts(sink)
    assert set(alerts) == truth
    # Morpho values count the loan token (USDC, 6 decimals), and the alert says so
    assert all(a["base_unit"] == "USDC" and a["base_decimals"] == 6 and a["debt_usd"].endswith(" USDC")
               for a in alerts.values())


async def test_comet_only_keeper_absorbs_every_liquidatable_account(devnet, w3, others, sink, tmp_path):
    minfo, cinfo = others
    start = await crash(w3, devnet.info, minfo)
    truth, rows = await run_once(devnet, tmp_path, comet_config_toml(cinfo), sink.base_url + "/hook")
    me = to_checksum_address(devnet.info.liquidator)
    absorbed = {to_checksum_address("0x" + lg["topics"][2][-40:])
                for lg in await events(w3, cinfo.comet, COMET_ABSORB, start)
                if to_checksum_address("0x" + lg["topics"][1][-40:]) == me}
    assert len(truth) >= 2, "the crash should make Comet accounts liquidatable"
    assert absorbed == truth, rows
    assert [r for _, r, *_ in rows] == ["done"], rows  # one absorb of all of them, then buys
    alerts = liquidated_alerts(sink)
    assert set(alerts) == truth
    assert all(a["protocol"] == "compound_v3" for a in alerts.values())


async def test_scan_check_compares_every_protocol_with_its_own_view(devnet, w3, others, tmp_path):
    """`keeper scan --json --check` over Aave V3, Morpho Blue and Comet after a crash: every
    position agrees with its protocol's own verdict (exit 0, "0 mismatches")."""
    import os
    import subprocess
    import sys

    from keeper.devnet.rpc import calldata, wait_receipt
    from tests.integration.test_conformance import COMET_ABI

    minfo, cinfo = others
    await crash(w3, devnet.info, minfo)
    me = devnet.info.deployer  # Comet's view reads stored indexes: accrue them at this block
    tx = await rpc(w3, "eth_sendTransaction", [{"from": me, "to": cinfo.comet, "data": calldata(
        COMET_ABI, "accrueAccount", [me]), "gas": hex(500_000)}])
    await wait_receipt(w3, tx)
    path = tmp_path / "scan.toml"
    path.write_text(devnet.config_path.read_text() + morpho_config_toml(minfo) + comet_config_toml(cinfo)
                    + f'\n[store]\npath = "{tmp_path / "s.sqlite"}"\n')
    out = subprocess.run([sys.executable, "-m", "keeper", "scan", "--config", str(path), "--json", "--check"],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    flagged = {r["protocol"] for r in rows if r["status"] == "liquidatable"}
    assert flagged == {"aave_v3", "morpho_blue", "compound_v3"}
    assert f"0 mismatches in {len(rows)} positions" in out.stderr
