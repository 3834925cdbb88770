"""Capital-free liquidation on the devnet: a wallet holding only ETH liquidates through
keeper's KeeperLiquidator on Aave V3, Morpho Blue and the Comet stand-in after a 30% crash of
WETH and WBTC (the Uniswap V3 pools arbitraged back to the oracle).

Each liquidation is planned with keeper's exact protocol math for the timestamp it is mined
at and the pure Uniswap V3 math on the pools' states, sent through keeper's TxManager
(allow-list, eth_call simulation, journal, a real signed transaction) with ``minProfit`` =
the planned profit; then the contract's ``Liquidated`` event, the operator's balance of the
profit token and the contract's (empty) balances are checked to the wei. A liquidation whose
route no longer pays reverts in simulation and is never sent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from eth_abi import encode
from eth_account import Account
from eth_utils import keccak

from keeper.chain.rpc import Rpc
from keeper.config import load_config
from keeper.config_types import Secret
from keeper.devnet.accounts import derived_key
from keeper.devnet.artifacts import load_aave
from keeper.devnet.comet import CometInfo, deploy_comet
from keeper.devnet.flash import (
    crash,
    devnet_flash_sources,
    devnet_routes,
    next_aave,
    next_comet,
    next_morpho,
    read_pools,
)
from keeper.devnet.morpho import MorphoInfo, deploy_morpho
from keeper.devnet.api import mint
from keeper.devnet.rpc import calldata, rpc, wait_receipt
from keeper.devnet.uniswap import FAR_DEADLINE, UniswapInfo, deploy_uniswap, load_uniswap
from keeper.dex import flash_plans
from keeper.dex.route import quote_route
from keeper.dex.liquidator import (
    FLASH_AAVE,
    FLASH_MORPHO,
    FLASH_UNISWAP,
    LIQUIDATED_TOPIC,
    encode_rescue,
    liquidator_allow_list,
    realized_profit,
)
from keeper.engine import Engine
from keeper.errors import SimulationReverted
from keeper.executors import TxRequest
from keeper.executors.signer import Signer
from keeper.executors.tx import build_tx_manager
from keeper.liquidator_deploy import deploy_liquidator
from keeper.store import Store

OPERATOR_KEY = derived_key("flash-operator", 1, 0)
OPERATOR = Account.from_key(OPERATOR_KEY).address
ERC20 = load_aave("MintableERC20").abi
MAX_ROUNDS = 40


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
            raise RuntimeError("could not revert the flash-liquidation world")


@pytest_asyncio.fixture(loop_scope="session")
async def node(devnet) -> AsyncIterator[Rpc]:
    r = Rpc(devnet.rpc_url, timeout_s=60.0)
    try:
        yield r
    finally:
        await r.close()


@pytest_asyncio.fixture(loop_scope="session")
async def tx(devnet, world, node, tmp_path):
    cfg = load_config(devnet.config_path)
    store = Store(tmp_path / "k.sqlite")
    manager = build_tx_manager(cfg.executor, mode="live", private_key=Secret(OPERATOR_KEY), rpc=node,
                               store=store, allow=liquidator_allow_list(world.contract))
    yield manager
    store.close()


async def balance(node: Rpc, token: str, who: str) -> int:
    return int.from_bytes(await node.call(token, bytes.fromhex(calldata(ERC20, "balanceOf", [who])[2:])), "big")


async def execute(devnet, world, node, tx, liq, t: int, key: str) -> int:
    """Send one planned liquidation mined at ``t``; check it to the wei; return the profit."""
    info = devnet.info
    before = await balance(node, liq.profit_token, OPERATOR)
    await rpc_set_timestamp(node, t)
    out = await tx.send(TxRequest(to=world.contract, data=liq.calldata, purpose=f"flash {liq.protocol}",
                                  action_key=key, max_cost_wei=10**17))
    assert out.ok, out
    assert len([lg for lg in out.logs if lg["topics"][0] == LIQUIDATED_TOPIC]) == 1
    profit = realized_profit(out.logs, world.contract)
    assert profit == liq.expected_profit > 0 and liq.min_profit <= profit
    assert await balance(node, liq.profit_token, OPERATOR) - before == profit
    for token in info.tokens.values():
        assert await balance(node, token, world.contract) == 0
    return profit


async def rpc_set_timestamp(node: Rpc, t: int) -> None:
    await node.request("evm_setNextBlockTimestamp", [t])


# ------------------------------------------------------------------ Aave V3


@pytest.fixture
async def engine(devnet, node, tmp_path):
    cfg = load_config(devnet.config_path)
    cfg = cfg.model_copy(update={"store": cfg.store.model_copy(update={"path": tmp_path / "e.sqlite"})})
    store = Store(tmp_path / "e.sqlite")
    yield Engine(cfg, node, store)
    store.close()


async def plan_aave(devnet, world, node, engine, user=None, force=None, min_profit=None):
    return await next_aave(node, engine, devnet.info, world.minfo, world.uinfo, user=user, force=force,
                           min_profit=min_profit)


async def test_aave_every_profitable_borrower_liquidated_capital_free(devnet, world, node, tx, engine):
    done = []
    for n in range(MAX_ROUNDS):
        t, liq = await plan_aave(devnet, world, node, engine)
        if liq is None:
            break  # no liquidatable account has a paying capital-free liquidation left
        await execute(devnet, world, node, tx, liq, t, f"flash-aave:{n}")
        done.append(liq)
    else:
        pytest.fail("still liquidating after MAX_ROUNDS")
    assert done, "the crash should leave an Aave borrower liquidatable"
    assert {d.plan.flash.source for d in done} <= {FLASH_AAVE, FLASH_MORPHO, FLASH_UNISWAP}


@pytest.mark.parametrize("source", [FLASH_AAVE, FLASH_MORPHO, FLASH_UNISWAP])
async def test_aave_each_flash_source(devnet, world, node, tx, engine, source):
    t, liq = await plan_aave(devnet, world, node, engine, force=source)
    assert liq is not None and liq.plan.flash.source == source
    if source == FLASH_AAVE:  # the premium is part of the exact profit
        assert liq.plan.flash_fee > 0
    await execute(devnet, world, node, tx, liq, t, f"flash-aave-src:{source}")


async def test_unpaying_routes_revert_in_simulation_and_are_never_sent(devnet, w3, world, node, tx, engine):
    t, liq = await plan_aave(devnet, world, node, engine)
    nonce = int(await node.request("eth_getTransactionCount", [OPERATOR, "latest"]), 16)
    # 1. minProfit above what the route pays (by 0.1%: the simulation runs at the pending
    #    block's clock time, and seconds of interest move a capped Aave liquidation by some wei)
    greedy_min = liq.expected_profit + liq.expected_profit // 1000
    _, greedy = await plan_aave(devnet, world, node, engine, user=liq.account, min_profit=greedy_min)
    with pytest.raises(SimulationReverted, match="simulation reverted"):
        await tx.send(TxRequest(to=world.contract, data=greedy.calldata, purpose="greedy",
                                action_key="greedy", max_cost_wei=10**17))
    # 2. someone dumps the collateral into both pools of the route's first pair: it no longer pays
    me, hop = devnet.info.spare[1], liq.plan.route.hops[0]
    for fee in (500, 3000):
        pool = world.uinfo.pool(hop.token_in, hop.token_out, fee)
        dump = await balance(node, hop.token_in, pool.address)  # the pool's own reserve: price / ~4
        await send_as(w3, me, hop.token_in, calldata(ERC20, "mint", [me, dump]))
        await send_as(w3, me, hop.token_in, calldata(ERC20, "approve", [world.uinfo.router, dump]))
        await send_as(w3, me, world.uinfo.router, calldata(load_uniswap("SwapRouter").abi, "exactInputSingle",
                      [(hop.token_in, hop.token_out, fee, me, FAR_DEADLINE, dump, 0, 0)]))
    with pytest.raises(SimulationReverted):
        await tx.send(TxRequest(to=world.contract, data=liq.calldata, purpose="stale route",
                                action_key="stale", max_cost_wei=10**17))
    assert int(await node.request("eth_getTransactionCount", [OPERATOR, "latest"]), 16) == nonce
    # keeper's pure math on the moved pools says the same: the planned sale now pays too little
    moved = await read_pools(node, world.uinfo, await node.block_number())
    out = quote_route(liq.plan.route, moved, liq.plan.amount_in)
    assert out - liq.plan.repay - liq.plan.flash_fee < liq.min_profit


async def send_as(w3, sender: str, to: str, data: str) -> None:
    receipt = await wait_receipt(w3, await rpc(w3, "eth_sendTransaction",
                                               [{"from": sender, "to": to, "data": data, "gas": hex(10**6)}]))
    assert int(receipt["status"], 16) == 1


# ------------------------------------------------------------------ Morpho Blue


async def test_morpho_every_profitable_borrower_liquidated_capital_free(devnet, world, node, tx):
    done = 0
    for n in range(MAX_ROUNDS):
        t, liq = await next_morpho(node, devnet.info, world.minfo, world.uinfo)
        if liq is None:
            break
        await execute(devnet, world, node, tx, liq, t, f"flash-morpho:{n}")
        done += 1
    assert done >= 2, "the crash should leave Morpho borrowers liquidatable"


# ------------------------------------------------------------------ Comet stand-in


async def test_comet_every_profitable_borrower_liquidated_capital_free(devnet, world, node, tx):
    done = 0
    for n in range(MAX_ROUNDS):
        t, liq = await next_comet(node, devnet.info, world.minfo, world.cinfo, world.uinfo)
        if liq is None:
            break
        await execute(devnet, world, node, tx, liq, t, f"flash-comet:{n}")
        done += 1
    assert done >= 2, "the crash should leave Comet borrowers liquidatable"


# ------------------------------------------------------------------ the contract's guards


async def revert_data(node: Rpc, sender: str, to: str, data: bytes) -> str:
    """The revert data of an eth_call, as anvil returns it (``error.data``)."""
    resp = await node.provider.make_request("eth_call", [{"from": sender, "to": to, "data": "0x" + data.hex()},
                                                         "latest"])
    assert "error" in resp, resp
    return str(resp["error"].get("data", ""))


async def test_only_the_owner_calls_and_only_the_expected_lender_calls_back(devnet, world, node):
    stranger, t = devnet.info.spare[2], devnet.info.tokens
    liq = encode_rescue(t["USDC"], stranger)
    assert (await revert_data(node, stranger, world.contract, liq)).startswith("0x" + keccak(text="NotOwner()")[:4].hex())
    unexpected = "0x" + keccak(text="UnexpectedCallback(address)")[:4].hex()
    callbacks = [
        keccak(text="executeOperation(address,uint256,uint256,address,bytes)")[:4]
        + encode(["address", "uint256", "uint256", "address", "bytes"], [t["USDC"], 1, 0, world.contract, b""]),
        keccak(text="onMorphoFlashLoan(uint256,bytes)")[:4] + encode(["uint256", "bytes"], [1, b""]),
        keccak(text="onMorphoLiquidate(uint256,bytes)")[:4] + encode(["uint256", "bytes"], [1, b""]),
        keccak(text="uniswapV3FlashCallback(uint256,uint256,bytes)")[:4] + encode(["uint256", "uint256", "bytes"],
                                                                                   [0, 0, b""]),
    ]
    for data in callbacks:
        assert (await revert_data(node, stranger, world.contract, data)).startswith(unexpected)


async def test_rescue_returns_tokens_sent_by_mistake(devnet, w3, world, node, tx):
    usdc = devnet.info.tokens["USDC"]
    await mint(w3, devnet.info, "USDC", world.contract, 1234)
    before = await balance(node, usdc, OPERATOR)
    out = await tx.send(TxRequest(to=world.contract, data=encode_rescue(usdc, OPERATOR), purpose="rescue",
                                  action_key="rescue", max_cost_wei=10**17))
    assert out.ok
    assert await balance(node, usdc, OPERATOR) - before == 1234
    assert await balance(node, usdc, world.contract) == 0


async def test_keeper_liquidator_deploy_command(devnet, world, node, tmp_path):
    u = world.uinfo
    cfg = tmp_path / "keeper.toml"
    cfg.write_text(devnet.config_path.read_text() + f'\n[dex]\nuniswap_v3_factory = "{u.factory}"\n'
                   f'uniswap_v3_router = "{u.router}"\nuniswap_v3_quoter = "{u.quoter}"\n')
    proc = subprocess.run([sys.executable, "-m", "keeper", "liquidator", "deploy", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=180,
                          env={**os.environ, "KEEPER_PRIVATE_KEY": OPERATOR_KEY})
    assert proc.returncode == 0, proc.stderr
    address = proc.stdout.strip().splitlines()[-1]
    assert OPERATOR_KEY[2:] not in proc.stdout + proc.stderr
    owner = await node.call(address, keccak(text="owner()")[:4])
    router = await node.call(address, keccak(text="router()")[:4])
    assert owner[12:] == bytes.fromhex(OPERATOR[2:]) and router[12:] == bytes.fromhex(u.router[2:])
    # without a router configured: exit 2, the key named, nothing sent
    cfg.write_text(devnet.config_path.read_text())
    proc = subprocess.run([sys.executable, "-m", "keeper", "liquidator", "deploy", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=180,
                          env={**os.environ, "KEEPER_PRIVATE_KEY": OPERATOR_KEY})
    assert proc.returncode == 2 and "dex.uniswap_v3_router" in proc.stderr


async def test_aave_two_hop_route_through_exact_input(devnet, world, node, tx, engine):
    """The same liquidation forced through a two-hop route (SwapRouter.exactInput): the
    profit is still the pure math's to the wei."""
    info = devnet.info
    t, liq = await plan_aave(devnet, world, node, engine)
    c = liq.call
    block = await node.block_number()
    pools = await read_pools(node, world.uinfo, block)
    sources = await devnet_flash_sources(node, info, world.minfo, pools, c.debt, block)
    two_hops = [r for r in devnet_routes(info, c.collateral, c.debt) if len(r.hops) == 2]
    liq2 = flash_plans.aave(info.pool, c.user, c.collateral, c.debt, liq.plan.repay, liq.plan.amount_in,
                            two_hops, pools, sources, t + 600, slack_bps=1)
    assert liq2 is not None and len(liq2.plan.route.hops) == 2
    assert liq2.expected_profit <= liq.expected_profit  # the direct route was the best
    await execute(devnet, world, node, tx, liq2, t, "flash-aave-two-hops")


async def test_doctor_checks_the_dex_and_the_contract(devnet, world, node, tmp_path):
    from keeper.doctor import run_doctor

    u = world.uinfo
    dex = (f'\n[dex]\nuniswap_v3_factory = "{u.factory}"\nuniswap_v3_router = "{u.router}"\n'
           f'uniswap_v3_quoter = "{u.quoter}"\n\n[liquidator]\ncontract = "{world.contract}"\n')
    path = tmp_path / "keeper.toml"
    path.write_text(devnet.config_path.read_text() + dex)
    checks = {c.name: c for c in await run_doctor(load_config(path, env={"KEEPER_PRIVATE_KEY": OPERATOR_KEY}), node)}
    for name in ("dex: factory", "dex: router", "dex: quoter", "liquidator: contract"):
        assert checks[name].ok, checks[name]
    # another key, and a router that is not the contract's: both named
    other = derived_key("flash-operator", 1, 1)
    checks = {c.name: c for c in await run_doctor(load_config(path, env={"KEEPER_PRIVATE_KEY": other}), node)}
    assert not checks["liquidator: contract"].ok and "only the owner" in checks["liquidator: contract"].detail
    path.write_text(devnet.config_path.read_text() + dex.replace(u.router, u.quoter, 1))
    checks = {c.name: c for c in await run_doctor(load_config(path, env={}), node)}
    assert not checks["liquidator: contract"].ok and "swaps through" in checks["liquidator: contract"].detail
    assert checks["dex: router"].ok  # the quoter does use the factory: only the contract disagrees
