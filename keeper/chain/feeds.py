"""Chainlink-style USD feeds (``latestRoundData``, ``decimals``) read at a pinned block,
scaled to 8 decimals for the price book."""

from __future__ import annotations

from collections.abc import Mapping

from keeper.chain.abi import call_data, signed_word, word
from keeper.chain.multicall import Call, Multicall


class Feeds:
    def __init__(self, mc: Multicall, feeds: Mapping[str, str]):
        self.mc, self.feeds = mc, dict(feeds)  # SYMBOL -> feed address
        self.decimals: dict[str, int] = {}

    async def read(self, block: int | str) -> dict[str, int]:
        """SYMBOL -> USD e8 (floored); feeds that fail or answer <= 0 are left out."""
        if not self.feeds:
            return {}
        symbols = list(self.feeds)
        calls = [Call(self.feeds[s], call_data("latestRoundData()")) for s in symbols]
        todo = [s for s in symbols if s not in self.decimals]
        calls += [Call(self.feeds[s], call_data("decimals()")) for s in todo]
        res = await self.mc.run(calls, block)
        for s, (ok, raw) in zip(todo, res[len(symbols):]):
            self.decimals[s] = word(raw) if ok and len(raw) >= 32 else 8
        out = {}
        for s, (ok, raw) in zip(symbols, res[:len(symbols)]):
            answer = signed_word(raw, 1) if ok and len(raw) >= 160 else 0
            if answer > 0:
                d = self.decimals[s]
                out[s] = answer * 10**8 // 10**d if d >= 8 else answer * 10**(8 - d)
        return out
