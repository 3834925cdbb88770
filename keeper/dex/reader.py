"""The DEX as ``keeper run`` sees it at a tick (IO): pool states and flash lenders -> DexView.

::

    reader = DexReader(rpc, factory, contract)
    view = await reader.read(block, tokens, lenders)     # keeper.dex.view.DexView

Called by the responder once per market and tick, only when some position is liquidatable
and ``[liquidator] contract`` is configured. It reads, at the tick's pinned block: the
Uniswap V3 pool of every pair of the market's tokens at each fee tier (``getPool``, cached:
a pool never moves), each pool's state for the exact V3 math (``read_pool``, the tickBitmap
words around the price), and what every lender holds of each token (Morpho Blue, Aave's
aTokens, the pools themselves) with Aave's flash premium. Markets ticking at the same block
share the pool states read for the first of them, as the sales decided before them leave
them (``moved``: a market's capital-free liquidations are sent before the next market's, so
those meet the pools after them). Failures are SourceErrors; the responder then plans with
own capital only for that tick.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

from eth_abi import decode, encode

from keeper.chain.rpc import Rpc
from keeper.dex.capital_free import DEFAULT_FEES, FlashSource, PoolKey
from keeper.dex.liquidator import FLASH_AAVE, FLASH_UNISWAP
from keeper.dex.quoter import DEFAULT_WORDS, _sel, read_pool
from keeper.dex.route import Hop
from keeper.dex.sources import BALANCE_OF, PREMIUM_TOTAL
from keeper.dex.v3_pool import PoolState
from keeper.dex.view import DEADLINE_S, SLACK_BPS, DexView, FlashLender

GET_POOL = _sel("getPool(address,address,uint24)")


class DexReader:
    def __init__(self, rpc: Rpc, factory: str, contract: str, fees: Sequence[int] = DEFAULT_FEES,
                 words: int = DEFAULT_WORDS, slack_bps: int = SLACK_BPS):
        self.rpc, self.factory, self.contract = rpc, factory, contract
        self.fees, self.words, self.slack_bps = tuple(fees), words, slack_bps
        self._pools: dict[PoolKey, str | None] = {}  # getPool answers
        self._states: tuple[int, dict[PoolKey, PoolState]] = (-1, {})  # this block's pool states

    async def read(self, block: int, tokens: Sequence[str], lenders: Sequence[FlashLender]) -> DexView:
        tokens = sorted(set(tokens), key=str.lower)
        lenders = list(dict.fromkeys(lenders))  # markets of one Morpho declare the same lender
        pools = await self._pool_states(tokens, block)
        sources = await self._sources(tokens, lenders, list(pools.values()), block)
        stamp = int((await self.rpc.block(block))["timestamp"], 16)
        return DexView(self.contract, block, stamp + DEADLINE_S, pools, sources, tuple(tokens),
                       self.slack_bps)

    def moved(self, block: int, pools: Mapping[PoolKey, PoolState]) -> None:
        """The pools at ``block`` as the liquidations decided at it will leave them (their sales
        by the exact V3 math: keeper.dex.view.after_swap): the next market read at ``block``
        is planned on these. Nothing when ``block`` is not the one read last."""
        if self._states[0] == block:
            self._states[1].update(pools)

    async def _pool_states(self, tokens: Sequence[str], block: int) -> dict[PoolKey, PoolState]:
        keys = [Hop(a, f, b).key() for a, b in combinations(tokens, 2) for f in self.fees]
        todo = [k for k in keys if k not in self._pools]
        if todo:
            raws = await self.rpc.calls([(self.factory, GET_POOL + encode(["address", "address", "uint24"],
                                                                          [k[0], k[1], k[2]]))
                                         for k in todo], block)
            for k, raw in zip(todo, raws, strict=True):
                (address,) = decode(["address"], raw)
                self._pools[k] = None if int(address, 16) == 0 else address
        if self._states[0] != block:  # markets of one tick share the block: read each pool once
            self._states = (block, {})
        states = self._states[1]
        for k in keys:
            address = self._pools[k]
            if address is not None and k not in states:
                states[k] = await read_pool(self.rpc, address, block, self.words)
        return {k: states[k] for k in keys if k in states}

    async def _sources(self, tokens: Sequence[str], lenders: Sequence[FlashLender],
                       pools: Sequence[PoolState], block: int) -> dict[str, tuple[FlashSource, ...]]:
        """Per token: the lenders in order (Morpho, Aave as declared, then each pool holding it)."""
        premiums = {}
        for ln in lenders:
            if ln.source == FLASH_AAVE and ln.lender not in premiums:
                premiums[ln.lender] = int.from_bytes(await self.rpc.call(ln.lender, PREMIUM_TOTAL, block), "big")
        wanted: list[tuple[str, int, str, int, str]] = []  # token, source, lender, fee, holder
        for t in tokens:
            for ln in lenders:
                holder = ln.holder_of(t)
                if holder is not None:
                    wanted.append((t, ln.source, ln.lender, premiums.get(ln.lender, 0), holder))
            wanted += [(t, FLASH_UNISWAP, p.address, p.fee, p.address) for p in pools
                       if t.lower() in (p.token0.lower(), p.token1.lower())]
        if not wanted:
            return {}
        raws = await self.rpc.calls([(t, BALANCE_OF + encode(["address"], [h]))
                                     for t, _, _, _, h in wanted], block)
        out: dict[str, list[FlashSource]] = {}
        for (t, src, lender, fee, _), raw in zip(wanted, raws, strict=True):
            out.setdefault(t.lower(), []).append(FlashSource(src, lender, int.from_bytes(raw, "big"), fee))
        return {t: tuple(v) for t, v in out.items()}
