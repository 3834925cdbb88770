"""Uniswap V3 on the devnet (real v3-core / v3-periphery bytecode) and keeper's pure swap math
against it: QuoterV2 quotes and real SwapRouter swaps equal the pure math to the wei, across
initialized ticks; pools start at the feeds' prices with ~1% impact per $1M; the arbitrageur
brings them back to the oracle after a price move.

The ``uni`` fixture deploys once for this module and reverts the chain at its end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from eth_abi import decode

from keeper.chain.rpc import Rpc
from keeper.devnet.api import apply_price_change, get_price, mint, set_price
from keeper.devnet.artifacts import load_aave
from keeper.devnet.rpc import calldata, rpc, wait_receipt
from keeper.devnet.uniswap import (
    FAR_DEADLINE,
    UniswapInfo,
    align_pools,
    check_init_code_hash,
    deploy_uniswap,
    load_uniswap,
    sqrt_price_x96_for,
)
from keeper.dex.quoter import quote_exact_input, read_pool, read_route_pools
from keeper.dex.route import Route, quote_route
from keeper.dex.v3_pool import swap_exact_input

ERC20 = load_aave("MintableERC20").abi
GAS = hex(3_000_000)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def uni(devnet, w3) -> AsyncIterator[UniswapInfo]:
    before = await rpc(w3, "evm_snapshot", [])
    try:
        yield await deploy_uniswap(w3, devnet.info)
    finally:
        if not await rpc(w3, "evm_revert", [before]):
            raise RuntimeError("could not revert the Uniswap deployment")


@pytest_asyncio.fixture(loop_scope="session")
async def node(devnet) -> AsyncIterator[Rpc]:
    r = Rpc(devnet.rpc_url)
    try:
        yield r
    finally:
        await r.close()


async def send(w3, sender, to, abi, fn, args) -> dict:
    tx = {"from": sender, "to": to, "data": calldata(abi, fn, args), "gas": GAS}
    receipt = await wait_receipt(w3, await rpc(w3, "eth_sendTransaction", [tx]))
    assert int(receipt["status"], 16) == 1, f"{fn} reverted"
    return receipt


async def balance(w3, token, who) -> int:
    raw = await rpc(w3, "eth_call", [{"to": token, "data": calldata(ERC20, "balanceOf", [who])}, "latest"])
    return int(raw, 16)


async def add_concentrated(w3, devnet, uni: UniswapInfo, pool, width_ticks: list[tuple[int, int]]):
    """Extra positions near the price, so swaps cross initialized ticks."""
    me = devnet.info.deployer
    state_tick = decode(["uint160", "int24"], bytes.fromhex(
        (await rpc(w3, "eth_call", [{"to": pool.address, "data": calldata(load_uniswap("UniswapV3Pool").abi,
                                                                           "slot0", [])}, "latest"]))[2:])[:64])[1]
    s = 10 if pool.fee == 500 else 60
    a0, a1 = await balance(w3, pool.token0, me) // 100, await balance(w3, pool.token1, me) // 100
    for lo, hi in width_ticks:
        params = (pool.token0, pool.token1, pool.fee, (state_tick // s + lo) * s, (state_tick // s + hi) * s,
                  a0, a1, 0, 0, me, FAR_DEADLINE)
        await send(w3, me, uni.position_manager, load_uniswap("NonfungiblePositionManager").abi, "mint", [params])


def test_periphery_init_code_hash_is_the_core_pool():
    assert check_init_code_hash() == "0xe34f199b19b2b4f47f68442619d555527d244f78a3297ea89325f843f87b8b54"


async def test_pools_start_at_the_feed_prices(devnet, uni, node):
    info = devnet.info
    assert len(uni.pools) == 12  # 6 pairs x (0.05%, 0.3%)
    block = await node.block_number()
    for p in uni.pools:
        state = await read_pool(node, p.address, block)
        want = sqrt_price_x96_for(await get_price_of(node, devnet, p.symbol0), info.decimals[p.symbol0],
                                  await get_price_of(node, devnet, p.symbol1), info.decimals[p.symbol1])
        assert state.sqrt_price_x96 == want
        assert state.fee == p.fee and state.liquidity > 0


async def get_price_of(node, devnet, symbol) -> int:
    raw = await node.call(devnet.info.feeds[symbol], bytes.fromhex("50d25bcd"))  # latestAnswer()
    return int.from_bytes(raw, "big")


async def test_a_million_dollar_swap_moves_the_price_about_one_percent(devnet, uni, node):
    info = devnet.info
    p = uni.pool("WETH", "USDC", 500)
    state = await read_pool(node, p.address, await node.block_number())
    usdc_in = 1_000_000 * 10**6
    r = swap_exact_input(state, state.token0.lower() == info.tokens["USDC"].lower(), usdc_in)
    before, after = state.sqrt_price_x96**2, r.sqrt_price_x96**2
    move_bps = abs(after - before) * 10_000 // before
    assert 80 <= move_bps <= 120, move_bps


@pytest.mark.parametrize("fee", [500, 3000])
async def test_pure_math_equals_quoter_and_a_real_swap_across_ticks(devnet, w3, uni, node, fee):
    info, me = devnet.info, devnet.info.spare[0]
    pool = uni.pool("WETH", "USDC", fee)
    await add_concentrated(w3, devnet, uni, pool, [(-3, 2), (-40, 35), (-300, -1), (1, 250)])
    weth, usdc = info.tokens["WETH"], info.tokens["USDC"]
    block = await node.block_number()
    state = await read_pool(node, pool.address, block)
    assert len(state.ticks) >= 8  # full range + the four above
    for token_in, token_out, amount in ((weth, usdc, 10**18), (weth, usdc, 3_000 * 10**18),
                                        (usdc, weth, 25_000_000 * 10**6), (usdc, weth, 7)):
        route = Route.single(token_in, fee, token_out)
        pure = quote_route(route, {route.hops[0].key(): state}, amount)
        assert pure == await quote_exact_input(node, uni.quoter, route, amount, block)
    # a real swap through the router: the biggest, which crosses initialized ticks
    amount = 25_000_000 * 10**6
    crossed = swap_exact_input(state, usdc.lower() < weth.lower(), amount)
    assert crossed.liquidity != state.liquidity  # an initialized tick was crossed
    await send(w3, me, usdc, ERC20, "mint", [me, amount])
    await send(w3, me, usdc, ERC20, "approve", [uni.router, amount])
    before = await balance(w3, weth, me)
    await send(w3, me, uni.router, load_uniswap("SwapRouter").abi, "exactInputSingle",
               [(usdc, weth, fee, me, FAR_DEADLINE, amount, 0, 0)])
    assert await balance(w3, weth, me) - before == crossed.amount_out
    after = await read_pool(node, pool.address, await node.block_number())
    assert (after.sqrt_price_x96, after.tick, after.liquidity) == (crossed.sqrt_price_x96, crossed.tick,
                                                                   crossed.liquidity)


async def test_two_hop_route_equals_quoter(devnet, uni, node):
    t = devnet.info.tokens
    block = await node.block_number()
    route = Route.two(t["WBTC"], 3000, t["WETH"], 500, t["DAI"])
    pools = await read_route_pools(node, uni.factory, route, block)
    for amount in (10**8, 37 * 10**8 + 12_345):
        assert quote_route(route, pools, amount) == await quote_exact_input(node, uni.quoter, route, amount, block)
    assert Route.decode_path(route.encode_path()) == route


async def test_arbitrage_brings_the_pools_back_to_the_oracle(devnet, w3, uni, node):
    info = devnet.info
    old = await get_price(w3, info, "WETH")
    await set_price(w3, info, "WETH", apply_price_change(old, "-30%"))
    moved = await align_pools(w3, info, uni, {"WETH"})
    assert len(moved) == 6  # every WETH pool, and only those
    block = await node.block_number()
    for p in uni.pools:
        state = await read_pool(node, p.address, block)
        want = sqrt_price_x96_for(await get_price_of(node, devnet, p.symbol0), info.decimals[p.symbol0],
                                  await get_price_of(node, devnet, p.symbol1), info.decimals[p.symbol1])
        assert state.sqrt_price_x96 == want, (p.symbol0, p.symbol1, p.fee)
    await mint(w3, info, "USDC", info.spare[0], 1)  # the chain still takes ordinary transactions


def test_devnet_up_writes_the_dex_and_price_arbitrages_the_pools(tmp_path):
    """`keeper devnet up` (its own anvil) prints and writes [dex] and [liquidator] contract;
    `keeper devnet price` moves the feed and then the pools follow it."""
    import asyncio
    import os
    import subprocess
    import sys

    from keeper.config import load_config
    from keeper.devnet.lifecycle import read_uniswap
    from keeper.devnet.state import read_state

    def keeper(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "keeper", "devnet", *args, "--state-dir", str(tmp_path)],
                              capture_output=True, text=True, timeout=300, env=dict(os.environ))

    up = keeper("up", "--port", "0", "--borrowers", "3")
    try:
        assert up.returncode == 0, up.stderr
        uinfo, contract = read_uniswap(tmp_path)
        for name, address in (("Uniswap V3 factory", uinfo.factory), ("SwapRouter", uinfo.router),
                              ("QuoterV2", uinfo.quoter), ("KeeperLiquidator", contract)):
            assert name in up.stdout and address in up.stdout
        cfg = load_config(tmp_path / "keeper.toml", env={})
        assert (cfg.dex.uniswap_v3_factory, cfg.dex.uniswap_v3_router, cfg.dex.uniswap_v3_quoter) == \
            (uinfo.factory, uinfo.router, uinfo.quoter)
        assert cfg.liquidator.contract == contract
        moved = keeper("price", "WETH", "-10%")
        assert moved.returncode == 0, moved.stderr
        info = read_state(tmp_path)

        async def check() -> None:
            node = Rpc(info.rpc_url)
            try:
                block = await node.block_number()
                for p in uinfo.pools:
                    state = await read_pool(node, p.address, block, words=1)
                    prices = [int.from_bytes(await node.call(info.feeds[s], bytes.fromhex("50d25bcd")), "big")
                              for s in (p.symbol0, p.symbol1)]
                    want = sqrt_price_x96_for(prices[0], info.decimals[p.symbol0], prices[1], info.decimals[p.symbol1])
                    assert state.sqrt_price_x96 == want, (p.symbol0, p.symbol1, p.fee)
            finally:
                await node.close()

        asyncio.run(check())
    finally:
        keeper("down")
