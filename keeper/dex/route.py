"""A swap route through Uniswap V3 pools: one or two hops, each with its fee tier, pure.

::

    r = Route.single(WETH, 500, USDC)                 # WETH -> USDC in the 0.05% pool
    r = Route((Hop(WBTC, 3000, WETH), Hop(WETH, 500, DAI)))
    r.encode_path()     # SwapRouter / QuoterV2 path: token (20) | fee (3) | token (20) | ...
    quote_route(r, pools, amount_in)   # -> exact amount out, with the pools' states

``quote_route`` runs each hop's exact-input swap on the pool state (``v3_pool``), feeding a
hop's output into the next, as ``SwapRouter.exactInput`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from eth_utils import to_checksum_address

from keeper.dex.v3_pool import PoolState, swap_exact_input

FEE_TIERS = {100: 1, 500: 10, 3000: 60, 10000: 200}  # fee pips -> tick spacing (factory defaults)
MAX_HOPS = 2


class RouteError(ValueError):
    """A route that cannot be encoded or quoted (bad hop, missing pool)."""


@dataclass(frozen=True, slots=True)
class Hop:
    token_in: str
    fee: int  # pips
    token_out: str

    def key(self) -> tuple[str, str, int]:
        """The pool's identity: (token0, token1, fee), token0 the lower address."""
        a, b = sorted((self.token_in.lower(), self.token_out.lower()))
        return a, b, self.fee

    def zero_for_one(self) -> bool:
        return self.token_in.lower() < self.token_out.lower()


@dataclass(frozen=True, slots=True)
class Route:
    hops: tuple[Hop, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.hops) <= MAX_HOPS:
            raise RouteError(f"a route has 1 to {MAX_HOPS} hops, got {len(self.hops)}")
        for h in self.hops:
            if h.fee not in FEE_TIERS:
                raise RouteError(f"fee {h.fee} is not a Uniswap V3 fee tier {sorted(FEE_TIERS)}")
            if h.token_in.lower() == h.token_out.lower():
                raise RouteError(f"hop swaps {h.token_in} for itself")
        for a, b in zip(self.hops, self.hops[1:]):
            if a.token_out.lower() != b.token_in.lower():
                raise RouteError(f"hops do not chain: {a.token_out} then {b.token_in}")

    @classmethod
    def single(cls, token_in: str, fee: int, token_out: str) -> Route:
        return cls((Hop(token_in, fee, token_out),))

    @classmethod
    def two(cls, token_in: str, fee1: int, middle: str, fee2: int, token_out: str) -> Route:
        return cls((Hop(token_in, fee1, middle), Hop(middle, fee2, token_out)))

    @property
    def token_in(self) -> str:
        return self.hops[0].token_in

    @property
    def token_out(self) -> str:
        return self.hops[-1].token_out

    def encode_path(self) -> bytes:
        """Uniswap V3 Path encoding: tokenIn | fee (uint24) | token | fee | tokenOut."""
        out = bytes.fromhex(self.hops[0].token_in.removeprefix("0x"))
        for h in self.hops:
            out += h.fee.to_bytes(3, "big") + bytes.fromhex(h.token_out.removeprefix("0x"))
        return out

    @classmethod
    def decode_path(cls, path: bytes) -> Route:
        if len(path) < 43 or (len(path) - 20) % 23:
            raise RouteError(f"a path is 20 + 23k bytes, got {len(path)}")
        hops, pos = [], 0
        while pos + 20 < len(path):
            a = to_checksum_address(path[pos : pos + 20])
            fee = int.from_bytes(path[pos + 20 : pos + 23], "big")
            b = to_checksum_address(path[pos + 23 : pos + 43])
            hops.append(Hop(a, fee, b))
            pos += 23
        return cls(tuple(hops))

    def describe(self, symbols: Mapping[str, str] | None = None) -> str:
        """E.g. "WETH -0.05%-> USDC" with ``symbols`` (address, lower case -> symbol)."""
        names = symbols or {}

        def name(a: str) -> str:
            return names.get(a.lower(), a)

        text = name(self.token_in)
        for h in self.hops:
            text += f" -{h.fee / 10_000:g}%-> {name(h.token_out)}"  # display only
        return text


def quote_route(route: Route, pools: Mapping[tuple[str, str, int], PoolState], amount_in: int) -> int:
    """Exact output of ``SwapRouter.exactInput`` along ``route`` for ``amount_in``, from the
    pools' states (keyed by ``Hop.key()``). Raises RouteError for a missing pool and
    keeper.dex.v3_math.V3MathError where a pool would revert."""
    amount = amount_in
    for h in route.hops:
        pool = pools.get(h.key())
        if pool is None:
            raise RouteError(f"no pool state for {h.token_in}/{h.token_out} fee {h.fee}")
        amount = swap_exact_input(pool, h.zero_for_one(), amount).amount_out
    return amount
