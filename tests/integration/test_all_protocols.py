"""One keeper, three protocols, one crash: Aave V3 liquidationCall, Morpho Blue liquidate and
Compound V3 absorb all sent by the keeper's wallet, seen in each protocol's own events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from eth_utils import to_checksum_address

from keeper.chain.abi import topic
from keeper.config import load_config
from keeper.devnet.api import apply_price_change, get_price, mint, set_price
from keeper.devnet.comet import CometInfo
from keeper.devnet.lifecycle import comet_config_toml, morpho_config_toml
from keeper.devnet.morpho import MorphoInfo, follow_feed
from keeper.devnet.rpc import rpc
from keeper.wiring import build_keeper
from tests.integration.conftest import deployed, morpho_and_comet

LIQUIDATOR_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil #1
AAVE_LIQUIDATION = topic("LiquidationCall(address,address,address,uint256,uint256,address,bool)")
MORPHO_LIQUIDATE = topic("Liquidate(bytes32,address,address,uint256,uint256,uint256,uint256,uint256)")
COMET_ABSORB = topic("AbsorbDebt(address,address,uint256,uint256)")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def others(devnet, w3) -> AsyncIterator[tuple[MorphoInfo, CometInfo]]:
    async with deployed(w3, lambda: morpho_and_comet(w3, devnet.info, 12, 3)) as both:
        yield both


async def logs(w3, address: str, event: bytes, start: int) -> list[dict]:
    return await rpc(w3, "eth_getLogs", [{"address": address, "topics": ["0x" + event.hex()],
                                          "fromBlock": hex(start), "toBlock": "latest"}])


async def test_one_crash_liquidates_on_all_three(devnet, w3, others, tmp_path: Path):
    minfo, cinfo = others
    info = devnet.info
    me = to_checksum_address(info.liquidator)
    for symbol, amount in (("USDC", 10**8 * 10**6), ("DAI", 10**7 * 10**18), ("WETH", 10**4 * 10**18),
                           ("WBTC", 500 * 10**8)):
        await mint(w3, info, symbol, me, amount)
    start = int(await rpc(w3, "eth_blockNumber", []), 16)
    for symbol in ("WETH", "WBTC"):
        change = await set_price(w3, info, symbol, apply_price_change(await get_price(w3, info, symbol), "-35%"))
        await follow_feed(w3, minfo, symbol, change.old_e8, change.new_e8)
    # Comet sells absorbed collateral only below its target reserves: the stand-in starts above
    path = tmp_path / "keeper.toml"
    path.write_text('mode = "live"\n' + devnet.config_path.read_text() + morpho_config_toml(minfo)
                    + comet_config_toml(cinfo) + f'\n[store]\npath = "{tmp_path / "k.sqlite"}"\n'
                    "\n[liquidator]\nenabled = true\nmin_profit_base = 0\n")
    k = await build_keeper(load_config(path, env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY}))
    try:
        head = await k.rpc.block_number()
        await k.engine.index(head)
        await k.engine.full_scan(head)
        await k.executor.drain()
        results = k.store.query("SELECT action_key, result, detail FROM actions")
    finally:
        await k.close()
    aave = [lg for lg in await logs(w3, info.pool, AAVE_LIQUIDATION, start)
            if to_checksum_address("0x" + lg["data"][2 + 64 * 2 + 24:2 + 64 * 3]) == me]
    morpho = [lg for lg in await logs(w3, minfo.morpho, MORPHO_LIQUIDATE, start)
              if to_checksum_address("0x" + lg["topics"][2][-40:]) == me]
    comet = [lg for lg in await logs(w3, cinfo.comet, COMET_ABSORB, start)
             if to_checksum_address("0x" + lg["topics"][1][-40:]) == me]
    assert aave and morpho and comet, results
    bought = await logs(w3, cinfo.comet, topic("BuyCollateral(address,address,uint256,uint256)"), start)
    assert [lg for lg in bought if to_checksum_address("0x" + lg["topics"][1][-40:]) == me], results
    assert all(r == "done" for key, r, _ in results if key.startswith(("liq:", "mliq:", "absorb:"))), results


async def test_gradual_decline_tops_up_protected_loans_on_morpho_and_comet(devnet, w3, others, tmp_path):
    from keeper.model import Status

    minfo, cinfo = others
    info = devnet.info
    me = to_checksum_address(info.liquidator)
    for symbol, amount in (("USDC", 10**8 * 10**6), ("WETH", 10**4 * 10**18), ("WBTC", 500 * 10**8)):
        await mint(w3, info, symbol, me, amount)
    # the riskiest WETH-collateral borrower of each protocol is "the user's own"
    path = tmp_path / "scan.toml"
    base = (devnet.config_path.read_text() + morpho_config_toml(minfo) + comet_config_toml(cinfo)
            + f'\n[store]\npath = "{tmp_path / "k.sqlite"}"\n')
    path.write_text(base)
    k = await build_keeper(load_config(path, env={}))
    try:
        head = await k.rpc.block_number()
        await k.engine.index(head)
        got = await k.engine.full_scan(head)
    finally:
        await k.close()
    weth = info.tokens["WETH"]
    pick = {}
    for proto in ("morpho_blue", "compound_v3"):
        cands = [p for p in got if p.protocol == proto and weth in p.assets and p.health_factor_wad]
        pick[proto] = min(cands, key=lambda p: p.health_factor_wad).account
    rules = "".join(f'\n[[protect]]\naccount = "{a}"\ntrigger_hf = "1.10"\ntarget_hf = "1.30"\n'
                    'actions = ["repay:USDC", "supply:WETH"]\n' for a in pick.values())
    live = tmp_path / "live.toml"
    live.write_text('mode = "live"\n' + base.replace("k.sqlite", "live.sqlite") + rules)
    k = await build_keeper(load_config(live, env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY}))
    worst = {}
    try:
        for _ in range(10):  # WETH -4% a block
            change = await set_price(w3, info, "WETH", apply_price_change(await get_price(w3, info, "WETH"), "-4%"))
            await follow_feed(w3, minfo, "WETH", change.old_e8, change.new_e8)
            await k.engine.on_block(await k.rpc.block_number())
            await k.executor.drain()
            for w in k.engine.watches:
                for proto, acct in pick.items():
                    p = w.positions.get(acct)
                    if p is not None and p.protocol == proto:
                        assert p.status != Status.LIQUIDATABLE, (proto, p)
                        worst[proto] = min(worst.get(proto, 2**256), p.health_factor_wad or 2**256)
        done = k.store.query("SELECT action_key FROM actions WHERE kind = 'top_up' AND result = 'done'")
    finally:
        await k.close()
    keys = " ".join(key for (key,) in done)
    assert "morpho" in keys and "comet" in keys, keys
    assert all(v >= 10**18 for v in worst.values()), worst
