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
from keeper.devnet.comet import CometInfo, deploy_comet
from keeper.devnet.lifecycle import comet_config_toml, morpho_config_toml
from keeper.devnet.morpho import MorphoInfo, deploy_morpho, follow_feed
from keeper.devnet.rpc import rpc
from keeper.wiring import build_keeper

LIQUIDATOR_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil #1
AAVE_LIQUIDATION = topic("LiquidationCall(address,address,address,uint256,uint256,address,bool)")
MORPHO_LIQUIDATE = topic("Liquidate(bytes32,address,address,uint256,uint256,uint256,uint256,uint256)")
COMET_ABSORB = topic("AbsorbDebt(address,address,uint256,uint256)")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def others(devnet, w3) -> AsyncIterator[tuple[MorphoInfo, CometInfo]]:
    before = await rpc(w3, "evm_snapshot", [])
    try:
        yield (await deploy_morpho(w3, devnet.info, 12, 3), await deploy_comet(w3, devnet.info, 12, 3))
    finally:
        await rpc(w3, "evm_revert", [before])


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
