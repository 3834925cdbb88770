"""Devnet helpers for capital-free liquidations (tests, bench, demo): one crash that the
DEX follows, every pool's state at a block, every flash source of a token.

::

    await crash(w3, info, minfo, uinfo, "-30%", ("WETH", "WBTC"))   # feeds, Morpho oracles, pools
    pools = await read_pools(rpc, uinfo, block)                      # Hop.key() -> PoolState
    sources = await devnet_flash_sources(rpc, info, minfo, pools, token, block)
    routes = devnet_routes(info, collateral, debt)                   # 1 hop x 2 fees + 2 hops
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from web3 import AsyncWeb3

from keeper.chain.rpc import Rpc
from keeper.devnet.api import apply_price_change, get_price, set_price
from keeper.devnet.morpho import MorphoInfo, follow_feed
from keeper.devnet.state import DevnetInfo
from keeper.devnet.uniswap import UniswapInfo, align_pools
from keeper.dex.capital_free import FlashSource, PoolKey, candidate_routes
from keeper.dex.quoter import read_pool
from keeper.dex.route import Hop, Route
from keeper.dex.sources import flash_sources
from keeper.dex.v3_pool import PoolState


async def crash(w3: AsyncWeb3, info: DevnetInfo, minfo: MorphoInfo | None, uinfo: UniswapInfo,
                change: str = "-30%", symbols: Sequence[str] = ("WETH", "WBTC")) -> None:
    """Move each feed by ``change``, the Morpho oracles with it, then arbitrage the pools."""
    for s in symbols:
        old = await get_price(w3, info, s)
        new = apply_price_change(old, change)
        await set_price(w3, info, s, new)
        if minfo is not None:
            await follow_feed(w3, minfo, s, old, new)
    await align_pools(w3, info, uinfo, {s.upper() for s in symbols})


async def read_pools(rpc: Rpc, uinfo: UniswapInfo, block: int, words: int = 2) -> dict[PoolKey, PoolState]:
    out = {}
    for p in uinfo.pools:
        out[Hop(p.token0, p.fee, p.token1).key()] = await read_pool(rpc, p.address, block, words)
    return out


async def devnet_flash_sources(rpc: Rpc, info: DevnetInfo, minfo: MorphoInfo | None,
                               pools: Mapping[PoolKey, PoolState], token: str,
                               block: int) -> list[FlashSource]:
    symbol = info.symbol_of(token)
    return await flash_sources(rpc, token, block, morpho=minfo.morpho if minfo else None,
                               aave=(info.pool, info.a_tokens[symbol]), uniswap=list(pools.values()))


def devnet_routes(info: DevnetInfo, token_in: str, token_out: str) -> list[Route]:
    return candidate_routes(token_in, token_out, list(info.tokens.values()))
