"""The price book: USD prices (8 decimals) of tokens and of the gas coin, pure.

Every market that prices tokens in USD feeds it after each load (an Aave V3 oracle with a USD
base, Comet's feeds); ``[prices] feeds`` adds Chainlink-style feeds read each tick, so a
Morpho-only or Comet-only keeper can price its gas. Gas is priced through the gas coin's
wrapped token (``[prices] gas_coin``, a symbol, WETH by default).
"""

from __future__ import annotations

from collections.abc import Mapping

from keeper.model import Address

USD = 10**8  # the book's unit: USD with 8 decimals


class PriceBook:
    def __init__(self, gas_coin: str = "WETH"):
        self.gas_coin = gas_coin.upper()
        self.by_token: dict[str, int] = {}  # lower-case token address -> USD e8
        self.by_symbol: dict[str, int] = {}  # upper-case symbol -> USD e8
        self.symbol_of: dict[str, str] = {}  # lower-case token address -> upper-case symbol

    def learn(self, prices: Mapping[Address, tuple[str, int]]) -> None:
        """``prices``: token -> (symbol, USD e8). Zero prices (a dead feed) are not learned."""
        for token, (symbol, price) in prices.items():
            if price > 0:
                self.by_token[token.lower()] = price
                self.by_symbol[symbol.upper()] = price

    def learn_symbols(self, tokens: Mapping[Address, str]) -> None:
        """token -> symbol of a market's tokens, so a feed priced by symbol prices them."""
        for token, symbol in tokens.items():
            self.symbol_of[token.lower()] = symbol.upper()

    def learn_feeds(self, prices: Mapping[str, int]) -> None:
        """SYMBOL -> USD e8 from configured feeds: they win over what markets said."""
        for symbol, price in prices.items():
            if price > 0:
                self.by_symbol[symbol.upper()] = price
                for token, s in self.symbol_of.items():
                    if s == symbol.upper():
                        self.by_token[token] = price

    def usd(self, token: Address) -> int | None:
        t = token.lower()
        price = self.by_token.get(t)
        return price if price is not None else self.by_symbol.get(self.symbol_of.get(t, ""))

    @property
    def gas_usd_e8(self) -> int | None:
        """USD e8 of one whole gas coin (1e18 wei)."""
        return self.by_symbol.get(self.gas_coin)

    def gas_cost_usd(self, gas_wei: int) -> int | None:
        """USD e8 of ``gas_wei`` wei, rounded up (a cost)."""
        p = self.gas_usd_e8
        return None if p is None else -(-gas_wei * p // 10**18)

    def usd_to_wei(self, usd_e8: int) -> int:
        """Wei of the gas coin worth ``usd_e8`` (floored; 0 when the gas coin has no price)."""
        p = self.gas_usd_e8
        return 0 if not p or usd_e8 <= 0 else usd_e8 * 10**18 // p

    def value_usd(self, token: Address, amount: int, decimals: int, up: bool = False) -> int | None:
        """USD e8 of ``amount`` base units of ``token`` (floored, or rounded up with ``up``)."""
        p = self.usd(token)
        if p is None:
            return None
        n = amount * p
        return -(-n // 10**decimals) if up else n // 10**decimals

    def tokens_for_usd(self, token: Address, usd_e8: int, decimals: int) -> int | None:
        """Base units of ``token`` worth ``usd_e8``, rounded up (to pay a cost in it)."""
        p = self.usd(token)
        return None if not p else -(-usd_e8 * 10**decimals // p)
