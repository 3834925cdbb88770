"""``keeper run`` liquidates capital-free: a keeper (build_keeper, engine index + full scan,
executor drain, live mode) whose wallet holds only ETH, with ``[liquidator] contract`` and
``[dex]`` configured, liquidates the borrowers of Aave V3, Morpho Blue and the Comet stand-in
after a 30% crash of WETH and WBTC through keeper's KeeperLiquidator.

For each liquidation: the profit the contract's ``Liquidated`` event reports is the one the
``actions`` row records (detail: ``realized N`` in the profit token; route: the flash source
and the swap path), the operator's balance of the profit token grew by exactly that between
the block before the transaction and its block, and the contract holds nothing. A decision
whose route no longer pays (the pools moved after the tick) reverts in simulation and is
never sent: the operator's nonce does not move.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from eth_account import Account

from keeper.chain.rpc import Rpc
from keeper.config import load_config
from keeper.config_types import Secret
from keeper.devnet.accounts import derived_key
from keeper.devnet.artifacts import load_aave
from keeper.devnet.comet import CometInfo, deploy_comet
from keeper.devnet.flash import crash, next_aave, next_comet, next_morpho
from keeper.devnet.lifecycle import comet_config_toml, morpho_config_toml
from keeper.devnet.morpho import MorphoInfo, deploy_morpho
from keeper.devnet.rpc import calldata, rpc, wait_receipt
from keeper.devnet.uniswap import FAR_DEADLINE, UniswapInfo, deploy_uniswap, load_uniswap
from keeper.dex.liquidator import realized_profit
from keeper.dex.view import CapitalFree
from keeper.executors.signer import Signer
from keeper.liquidator_deploy import deploy_liquidator
from keeper.wiring import build_keeper

OPERATOR_KEY = derived_key("flash-keeper", 1, 0)
OPERATOR = Account.from_key(OPERATOR_KEY).address
ERC20 = load_aave("MintableERC20").abi
MAX_TICKS = 12


@dataclass(frozen=True)
class World:
    minfo: MorphoInfo
    cinfo: CometInfo
    uinfo: UniswapInfo
    contract: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(devnet, w3) -> AsyncIterator[World]:
    before = await rpc(w3, "evm_snapshot", [])
    node = Rpc(devnet.rpc_url, timeout_s=60.0)
    try:
        info = devnet.info
        minfo = await deploy_morpho(w3, info, 12, 3)
        cinfo = await deploy_comet(w3, info, 12, 3)
        uinfo = await deploy_uniswap(w3, info)
        await rpc(w3, "anvil_setBalance", [OPERATOR, hex(10 * 10**18)])  # gas money, nothing else
        contract = await deploy_liquidator(node, Signer(Secret(OPERATOR_KEY)), uinfo.router)
        await crash(w3, info, minfo, uinfo, "-30%", ("WETH", "WBTC"))
        yield World(minfo, cinfo, uinfo, contract)
    finally:
        await node.close()
        if not await rpc(w3, "evm_revert", [before]):
            raise RuntimeError("could not revert the capital-free world")


def keeper_config(devnet, world: World, tmp_path: Path) -> Path:
    u = world.uinfo
    path = tmp_path / "keeper.toml"
    path.write_text('mode = "live"\n' + devnet.config_path.read_text() + morpho_config_toml(world.minfo)
                    + comet_config_toml(world.cinfo) + f'\n[store]\npath = "{tmp_path / "k.sqlite"}"\n'
                    f'\n[dex]\nuniswap_v3_factory = "{u.factory}"\nuniswap_v3_router = "{u.router}"\n'
                    f'uniswap_v3_quoter = "{u.quoter}"\n'
                    f'\n[liquidator]\nenabled = true\nmin_profit_base = 0\ncontract = "{world.contract}"\n')
    return path


async def balance(node: Rpc, token: str, who: str, block: int | str = "latest") -> int:
    data = bytes.fromhex(calldata(ERC20, "balanceOf", [who])[2:])
    return int.from_bytes(await node.call(token, data, block), "big")


async def nonce(node: Rpc) -> int:
    return int(await node.request("eth_getTransactionCount", [OPERATOR, "latest"]), 16)


async def test_the_markets_of_one_tick_are_planned_on_the_pools_the_ones_before_them_moved(devnet, w3, world,
                                                                                            tmp_path):
    """One tick (a full scan) decides capital-free liquidations in several markets that sell
    into the same pools; each market's burst is sent after the one before, so each market is
    planned on the pools the sales decided before it leave (keeper.dex.reader ``moved``). Every
    liquidation of that tick then passes its simulation and is mined (before: the later
    markets were planned on the pools as read, and their sales reverted in simulation: "lost",
    planned again a tick later). The world is put back after: the other tests start from the
    crash."""
    snapshot = await rpc(w3, "evm_snapshot", [])
    k = await build_keeper(load_config(keeper_config(devnet, world, tmp_path),
                                       env={"KEEPER_PRIVATE_KEY": OPERATOR_KEY}))
    try:
        head = await k.rpc.block_number()
        await k.engine.index(head)
        await k.engine.full_scan(head)
        await k.executor.drain(timeout_s=300)
        rows = k.store.query("SELECT action_key, protocol, result, route FROM actions WHERE kind = 'liquidate'")
        assert all(r[3].startswith("capital-free") for r in rows), rows
        markets = {r[0].split(":")[1] for r in rows}
        assert len(markets) >= 3, rows  # several markets, one after another in the same tick
        assert [r for r in rows if r[2] != "done"] == [], rows
    finally:
        await k.close()
        assert await rpc(w3, "evm_revert", [snapshot])


async def test_keeper_run_liquidates_capital_free_on_all_three(devnet, world, tmp_path):
    info = devnet.info
    k = await build_keeper(load_config(keeper_config(devnet, world, tmp_path),
                                       env={"KEEPER_PRIVATE_KEY": OPERATOR_KEY}))
    try:
        assert k.executor.tx.address == OPERATOR
        for token in info.tokens.values():  # the wallet holds only the gas coin
            assert await balance(k.rpc, token, OPERATOR) == 0
        first = await nonce(k.rpc)
        for _ in range(MAX_TICKS):
            before = k.engine.responder.decided
            head = await k.rpc.block_number()
            await k.engine.index(head)
            await k.engine.full_scan(head)
            await k.executor.drain(timeout_s=300)
            if k.engine.responder.decided == before:
                break  # a tick that decides nothing: every paying liquidation is done
        else:
            pytest.fail("still deciding liquidations after MAX_TICKS ticks")
        rows = k.store.query("SELECT action_key, protocol, result, realized, tx_hash, detail, route "
                             "FROM actions WHERE kind = 'liquidate'")
        done = [r for r in rows if r[2] == "done"]
        assert {r[1] for r in done} == {"aave_v3", "morpho_blue", "compound_v3"}, rows
        per_block: dict[tuple[int, str], list[int]] = {}  # (block, profit token) -> realized profits
        for key, _proto, _result, realized_usd, tx_hash, detail, route in done:
            assert route.startswith(("capital-free: flash ", "capital-free: no flash loan")) and " via " in route
            token = re.search(r"profit in (0x[0-9a-fA-F]{40})", detail).group(1)
            realized = int(re.search(r"realized (\d+)$", detail).group(1))
            receipt = await k.rpc.request("eth_getTransactionReceipt", [tx_hash])
            assert realized_profit(receipt["logs"], world.contract) == realized > 0, detail
            per_block.setdefault((int(receipt["blockNumber"], 16), token), []).append(realized)
            assert int(realized_usd) > 0
        # the operator's balance grew by exactly the realized profits (a burst's liquidations
        # can share a block: each block's growth is the sum of the profits mined in it)
        for (block, token), profits in per_block.items():
            grew = await balance(k.rpc, token, OPERATOR, block) - await balance(k.rpc, token, OPERATOR, block - 1)
            assert grew == sum(profits), (block, grew, profits)
        for token in info.tokens.values():
            assert await balance(k.rpc, token, world.contract) == 0
        assert await nonce(k.rpc) - first == len(done)  # one transaction each: no approve, ever
        # nothing paying is left: keeper's own finders (exact math, pools) agree
        assert (await next_morpho(k.rpc, info, world.minfo, world.uinfo))[1] is None
        assert (await next_comet(k.rpc, info, world.minfo, world.cinfo, world.uinfo))[1] is None
        assert (await next_aave(k.rpc, k.engine, info, world.minfo, world.uinfo))[1] is None
        assert k.engine.responder.decided == len(rows)
    finally:
        await k.close()


async def send_as(w3, sender: str, to: str, data: str) -> None:
    receipt = await wait_receipt(w3, await rpc(w3, "eth_sendTransaction",
                                               [{"from": sender, "to": to, "data": data, "gas": hex(10**6)}]))
    assert int(receipt["status"], 16) == 1


async def test_a_route_that_stopped_paying_reverts_in_simulation_and_is_never_sent(devnet, w3, world, tmp_path):
    k = await build_keeper(load_config(keeper_config(devnet, world, tmp_path),
                                       env={"KEEPER_PRIVATE_KEY": OPERATOR_KEY}))
    held: list = []
    k.executor.submit = lambda ds, adapter, market: held.extend((d, adapter, market) for d in ds)
    try:
        head = await k.rpc.block_number()
        await k.engine.index(head)
        await k.engine.full_scan(head)  # the decisions are made, and held before the executor
        d, adapter, market = next(h for h in held if h[0].protocol == "aave_v3")
        assert isinstance(d.quote, CapitalFree)
        hop = d.quote.liq.plan.route.hops[0]
        me = devnet.info.spare[1]  # someone dumps the collateral into both pools of the pair
        for fee in (500, 3000):
            pool = world.uinfo.pool(hop.token_in, hop.token_out, fee)
            dump = await balance(k.rpc, hop.token_in, pool.address)
            await send_as(w3, me, hop.token_in, calldata(ERC20, "mint", [me, dump]))
            await send_as(w3, me, hop.token_in, calldata(ERC20, "approve", [world.uinfo.router, dump]))
            await send_as(w3, me, world.uinfo.router, calldata(load_uniswap("SwapRouter").abi, "exactInputSingle",
                          [(hop.token_in, hop.token_out, fee, me, FAR_DEADLINE, dump, 0, 0)]))
        sent = await nonce(k.rpc)
        r = await k.executor.act(d, adapter, market)
        assert r.result == "lost" and r.tx_hash is None, r
        assert await nonce(k.rpc) == sent
    finally:
        await k.close()
