"""Uniswap V3 reads (IO): quotes by ``QuoterV2`` ``eth_call`` and pool states for the pure math.

::

    out = await quote_exact_input(rpc, quoter, route, amount_in, block)    # QuoterV2
    pool = await read_pool(rpc, pool_address, block)                        # -> PoolState
    pools = await read_route_pools(rpc, factory, route, block)              # Hop.key() -> PoolState

``QuoterV2`` runs the real swap and reverts with the result, so it must be called with
``eth_call`` (never sent); its gas estimate is not used here. ``read_pool`` reads
``slot0``, ``liquidity``, fee, tick spacing, the tokens and every initialized tick
(``tickBitmap`` words over the whole tick range, then ``ticks(t).liquidityNet``) in two
batches at one pinned block. Every failure is a SourceError.
"""

from __future__ import annotations

from collections.abc import Iterable

from eth_abi import decode, encode
from eth_utils import keccak, to_checksum_address

from keeper.chain.rpc import Rpc
from keeper.dex.route import Route
from keeper.dex.v3_math import MAX_TICK, MIN_TICK
from keeper.dex.v3_pool import PoolState
from keeper.errors import SourceError

ZERO = "0x0000000000000000000000000000000000000000"
DEFAULT_WORDS = 2  # tickBitmap words each side: 512 tick spacings, a price move of 67% at 0.05%


def _sel(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def quote_calldata(route: Route, amount_in: int) -> bytes:
    """QuoterV2.quoteExactInput(path, amountIn)."""
    return _sel("quoteExactInput(bytes,uint256)") + encode(["bytes", "uint256"],
                                                           [route.encode_path(), amount_in])


async def quote_exact_input(rpc: Rpc, quoter: str, route: Route, amount_in: int,
                            block: int | str = "latest") -> int:
    """The amount ``SwapRouter.exactInput`` would give for ``amount_in`` along ``route``."""
    try:
        raw = await rpc.call(quoter, quote_calldata(route, amount_in), block)
        amount_out, *_ = decode(["uint256", "uint160[]", "uint32[]", "uint256"], raw)
    except SourceError:
        raise
    except Exception as e:  # a revert or undecodable answer from the node
        raise SourceError(f"QuoterV2 quote failed for {route.describe()}: {e}") from e
    return int(amount_out)


async def pool_of(rpc: Rpc, factory: str, token_a: str, token_b: str, fee: int,
                  block: int | str = "latest") -> str | None:
    """UniswapV3Factory.getPool; None when there is none."""
    raw = await rpc.call(factory, _sel("getPool(address,address,uint24)")
                         + encode(["address", "address", "uint24"], [token_a, token_b, fee]), block)
    (address,) = decode(["address"], raw)
    if int(address, 16) == 0:
        return None
    return to_checksum_address(address)


async def read_pool(rpc: Rpc, address: str, block: int, words: int | None = None) -> PoolState:
    """A pool's swap state at ``block``: with ``words``, the tickBitmap words within that
    many of the current tick's word (a swap that goes further raises V3MathError), else all."""
    heads = ["slot0()", "liquidity()", "fee()", "tickSpacing()", "token0()", "token1()"]
    try:
        raw = await rpc.calls([(address, _sel(s)) for s in heads], block)
        slot0 = decode(["uint160", "int24", "uint16", "uint16", "uint16", "uint8", "bool"], raw[0])
        (liquidity,), (fee,), (spacing,) = (decode([t], r) for t, r in
                                            zip(["uint128", "uint24", "int24"], raw[1:4]))
        (token0,), (token1,) = decode(["address"], raw[4]), decode(["address"], raw[5])
        lo, hi = (MIN_TICK // spacing) >> 8, (MAX_TICK // spacing) >> 8
        if words is not None:
            here = (int(slot0[1]) // spacing) >> 8
            lo, hi = max(lo, here - words), min(hi, here + words)
        words = list(range(lo, hi + 1))
        bitmaps = await rpc.calls([(address, _sel("tickBitmap(int16)") + encode(["int16"], [w]))
                                   for w in words], block)
        ticks = []
        for w, r in zip(words, bitmaps, strict=True):
            bits = int.from_bytes(r, "big")
            ticks += [((w << 8) + b) * spacing for b in range(256) if bits >> b & 1]
        infos = await rpc.calls([(address, _sel("ticks(int24)") + encode(["int24"], [t]))
                                 for t in ticks], block) if ticks else []
        nets = [decode(["uint128", "int128"], r[:64])[1] for r in infos]
    except SourceError:
        raise
    except Exception as e:  # malformed answers: not a Uniswap V3 pool
        raise SourceError(f"cannot read Uniswap V3 pool {address}: {e}") from e
    return PoolState(to_checksum_address(address), to_checksum_address(token0),
                     to_checksum_address(token1), int(fee), int(spacing), int(slot0[0]),
                     int(slot0[1]), int(liquidity), tuple(zip(ticks, nets, strict=True)),
                     None if words is None else (lo, hi))


async def read_route_pools(rpc: Rpc, factory: str, route: Route | Iterable[Route], block: int,
                           words: int | None = DEFAULT_WORDS) -> dict[tuple[str, str, int], PoolState]:
    """The states of the pools the route(s) go through, keyed by ``Hop.key()``; a hop
    without a pool is left out (``quote_route`` then names it)."""
    routes = [route] if isinstance(route, Route) else list(route)
    out: dict[tuple[str, str, int], PoolState] = {}
    for h in (h for r in routes for h in r.hops):
        if h.key() not in out:
            address = await pool_of(rpc, factory, h.token_in, h.token_out, h.fee, block)
            if address is not None:
                out[h.key()] = await read_pool(rpc, address, block, words)
    return out
