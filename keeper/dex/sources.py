"""Who can lend a token for one transaction, and at what fee (IO: reads at a pinned block).

::

    sources = await flash_sources(rpc, token, block, morpho=morpho,
                                  aave=(pool, a_token), uniswap=[pool_state, ...])

Morpho Blue first (free: anything Morpho holds), then Aave V3 (``flashLoanSimple``: the
underlying its aToken holds, ``FLASHLOAN_PREMIUM_TOTAL`` bps), then each Uniswap V3 pool
holding the token (its fee). ``keeper.dex.capital_free.plan`` picks among them; on equal
profit the first wins, so the order is the tie-break.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi import encode
from eth_utils import keccak

from keeper.chain.rpc import Rpc
from keeper.dex.capital_free import FlashSource
from keeper.dex.liquidator import FLASH_AAVE, FLASH_MORPHO, FLASH_UNISWAP
from keeper.dex.v3_pool import PoolState

BALANCE_OF = keccak(text="balanceOf(address)")[:4]
PREMIUM_TOTAL = keccak(text="FLASHLOAN_PREMIUM_TOTAL()")[:4]


async def flash_sources(rpc: Rpc, token: str, block: int, *, morpho: str | None = None,
                        aave: tuple[str, str] | None = None,
                        uniswap: Sequence[PoolState] = ()) -> list[FlashSource]:
    """Every configured lender of ``token`` with what it holds of it at ``block``.
    ``aave`` is (Pool, the token's aToken); ``uniswap`` the pool states that trade it."""
    holders: list[tuple[int, str, int]] = []  # (source, lender, fee)
    if morpho:
        holders.append((FLASH_MORPHO, morpho, 0))
    if aave:
        premium = int.from_bytes(await rpc.call(aave[0], PREMIUM_TOTAL, block), "big")
        holders.append((FLASH_AAVE, aave[0], premium))
    pools = [p for p in uniswap if token.lower() in (p.token0.lower(), p.token1.lower())]
    holders += [(FLASH_UNISWAP, p.address, p.fee) for p in pools]
    where = [aave[1] if src == FLASH_AAVE and aave else lender for src, lender, _ in holders]
    raws = await rpc.calls([(token, BALANCE_OF + encode(["address"], [w])) for w in where], block)
    return [FlashSource(src, lender, int.from_bytes(raw, "big"), fee)
            for (src, lender, fee), raw in zip(holders, raws, strict=True)]
