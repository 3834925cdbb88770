"""Morpho Blue, one market id at a time, behind the interface the engine asks of every
protocol (load_market, iter_accounts, evaluator, keys_of, moved, apply_shocks, events,
discover). A Morpho market is isolated (one collateral, one loan token), so the engine
keeps one Watch per market id; they share one MorphoBlueAdapter (and its per-block cache).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import replace

from keeper.chain.abi import call_data, string_or_bytes32
from keeper.chain.logs import Log
from keeper.chain.multicall import Call
from keeper.protocols.morpho_blue import math as math
from keeper.protocols.morpho_blue.math import MorphoMarket, MorphoPosition
from keeper.health.status import Thresholds
from keeper.model import Address, Position
from keeper.protocols.morpho_blue.reader import MARKET_EVENTS, POSITION_EVENTS, MorphoBlueAdapter

EVENTS = list(POSITION_EVENTS) + list(MARKET_EVENTS)


class MorphoMarketAdapter:
    name = "morpho_blue"

    def __init__(self, base: MorphoBlueAdapter, market_id: str):
        self.base = base
        self.id = market_id
        self.label = f"{base.label}:{market_id[:10]}"
        self.symbols: dict[str, str] = {}  # token address -> symbol
        self.decimals: dict[str, int] = {}
        self._cache: tuple[int, dict[str, MorphoMarket]] | None = None

    async def load_market(self, block: int, _heartbeat_for: Callable[[str], int]) -> MorphoMarket:
        cache = self.base.__dict__.setdefault("_block_cache", {})
        if block not in cache:  # one read per block for all of this Morpho's markets
            cache.clear()
            cache[block] = await self.base.load_markets(block)
        m = cache[block][self.id]
        if not self.symbols:
            await self._tokens(m, block)
        return m

    async def _tokens(self, m: MorphoMarket, block: int) -> None:
        tokens = [m.params.collateral_token, m.params.loan_token]
        res = await self.base.mc.run([Call(t, call_data(sig)) for t in tokens
                                      for sig in ("symbol()", "decimals()")], block)
        for i, t in enumerate(tokens):
            (ok_s, s), (ok_d, d) = res[2 * i], res[2 * i + 1]
            self.symbols[t] = string_or_bytes32(s) if ok_s else t[:8]
            self.decimals[t] = int.from_bytes(d[-32:], "big") if ok_d and d else 18

    async def iter_accounts(self, accounts: Sequence[Address], market: MorphoMarket
                            ) -> AsyncIterator[list[MorphoPosition]]:
        if accounts:
            yield await self.read_accounts(accounts, market)

    async def read_accounts(self, accounts: Sequence[Address], market: MorphoMarket
                            ) -> list[MorphoPosition]:
        return await self.base.read_positions(accounts, self.id, market.block)

    def evaluator(self, market: MorphoMarket) -> _Evaluator:
        return _Evaluator(market, self.symbols.get(market.params.collateral_token),
                          self.decimals.get(market.params.loan_token, 18))

    @staticmethod
    def keys_of(pos: MorphoPosition) -> list[str]:
        return ["market"]  # every position of an isolated market moves with it

    @staticmethod
    def moved(old: MorphoMarket | None, new: MorphoMarket) -> set[str]:
        if old is None or replace(old, block=0, timestamp=0) != replace(new, block=0, timestamp=0):
            return {"market"}
        return set()

    def apply_shocks(self, market: MorphoMarket, shocks: dict[str, int]) -> MorphoMarket:
        """The oracle price is collateral in loan-token units: a collateral move scales it,
        a loan-token move divides it (floored). Other symbols are ignored."""
        coll = self.symbols.get(market.params.collateral_token, "").upper()
        loan = self.symbols.get(market.params.loan_token, "").upper()
        up = {k.upper(): v for k, v in shocks.items()}
        price = market.price
        if coll in up:
            price = price * (10_000 + up[coll]) // 10_000
        if loan in up:
            if up[loan] <= -10_000:
                raise ValueError(f"{loan} cannot fall by 100% or more")
            price = price * 10_000 // (10_000 + up[loan])
        return replace(market, price=price)

    def event_sources(self, _market: MorphoMarket) -> list[Address]:
        return [self.base.morpho]

    @staticmethod
    def event_topics() -> list[bytes]:
        return EVENTS

    def touched(self, logs: Iterable[Log]) -> tuple[set[Address], set[Address]]:
        logs = [lg for lg in logs if len(lg.topics) > 1 and "0x" + lg.topics[1].hex() == self.id]
        return self.base.touched(logs)

    async def discover(self, from_block: int, to_block: int) -> AsyncIterator[tuple[int, set[Address]]]:
        async for last, found in self.base.discover_positions(from_block, to_block):
            yield last, {a for mid, a in found if mid == self.id}

    @staticmethod
    def account_of(pos: MorphoPosition) -> Address:
        return pos.account


class _Evaluator:
    def __init__(self, market: MorphoMarket, symbol: str | None, loan_decimals: int):
        self.market, self.symbol, self.loan_decimals = market, symbol, loan_decimals

    def position(self, pos: MorphoPosition, thresholds: Thresholds, with_drop: bool) -> Position:
        p = math.position_from(self.market, pos, thresholds, self.symbol, with_drop)
        return replace(p, base_decimals=self.loan_decimals)

    def drop(self, pos: MorphoPosition) -> int | None:
        return math.drop_to_liquidation_bps(self.market, pos)
