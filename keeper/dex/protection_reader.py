"""KeeperProtection reads shared by every protocol's deleverage (IO): the DEX pools a
deleverage sells on, and whether the borrower named the keeper key (``keeperOf``)."""

from __future__ import annotations

from eth_abi import encode

from keeper.chain.abi import addr_arg, address_word, selector, word
from keeper.chain.rpc import Rpc
from keeper.dex.deleverage import DEFAULT_FEES, SET_KEEPER, PoolKey
from keeper.dex.quoter import read_route_pools
from keeper.dex.route import Route
from keeper.dex.v3_pool import PoolState


async def read_sale_pools(rpc: Rpc, factory: str, pairs, block: int) -> dict[PoolKey, PoolState]:
    """``pairs``: (collateral, debt) token addresses; every fee tier's pool that exists."""
    routes = [Route.single(c, fee, d) for c, d in pairs for fee in DEFAULT_FEES]
    return await read_route_pools(rpc, factory, routes, block) if routes else {}


async def manager_grants(rpc: Rpc, protocol: str, granted: str, grant: bytes, what: str, contract: str,
                         borrower: str, keeper: str, block: int) -> list[tuple[str, bytes, bool, str]]:
    """(to, data, done, what) of a borrower's delegation to ``contract`` on a protocol whose
    ``granted(borrower, contract)`` view (Morpho ``isAuthorized``, Comet ``isAllowed``) says
    whether ``grant`` was sent, and ``setKeeper`` when another key than the borrower's runs keeper."""
    done = word(await rpc.call(protocol, selector(f"{granted}(address,address)") + addr_arg(borrower)
                               + addr_arg(contract), block)) == 1
    out = [(protocol, grant, done, what)]
    if keeper.lower() != borrower.lower():
        data, named = await keeper_named(rpc, contract, borrower, keeper, block)
        out.append((contract, data, named, f"name {keeper} as the key that may call the contract for you"))
    return out


async def keeper_named(rpc: Rpc, contract: str, borrower: str, keeper: str, block: int) -> tuple[bytes, bool]:
    """(the borrower's ``setKeeper(keeper)`` calldata, whether the contract already has it)."""
    now = address_word(await rpc.call(contract, selector("keeperOf(address)") + addr_arg(borrower), block))
    return selector(SET_KEEPER) + encode(["address"], [keeper]), now.lower() == keeper.lower()
