"""Aave V3 deleverage inputs from the node (IO): the Uniswap V3 pools that sell a rule's
collateral for its debt, and the Pool's flash-loan premium, at the market's block."""

from __future__ import annotations

from collections.abc import Iterable

from keeper.chain.abi import selector, word
from keeper.chain.rpc import Rpc
from keeper.dex.quoter import read_route_pools
from keeper.dex.route import Route
from keeper.protocols.aave_v3.deleverage import DEFAULT_FEES, FLASH_AAVE, DexInputs


async def read_dex_inputs(rpc: Rpc, pool: str, factory: str, pairs: Iterable[tuple[str, str]],
                          block: int) -> DexInputs:
    """``pairs``: (collateral, debt) token addresses. The flash loan comes from the Pool itself."""
    routes = [Route.single(c, fee, d) for c, d in pairs for fee in DEFAULT_FEES]
    pools = await read_route_pools(rpc, factory, routes, block) if routes else {}
    premium = word(await rpc.call(pool, selector("FLASHLOAN_PREMIUM_TOTAL()"), block))
    return DexInputs(pools, FLASH_AAVE, pool, premium)
