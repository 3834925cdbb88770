"""`keeper doctor` checks of a Compound V3 market: the Comet (base token, feed, assets) and a
positive ``getPrice`` for every feed. Plain ``eth_call``s of functions the real Comet has."""

from __future__ import annotations

from typing import Any

from keeper.chain.abi import address_word, uint_arg, word, words
from keeper.chain.rpc import Rpc
from keeper.chain.views import has_code, symbol_of, view
from keeper.checks import Check, check
from keeper.chain.probe import ask, contract
from keeper.units import format_fixed

ZERO = "0x0000000000000000000000000000000000000000"


# -- Compound V3 -----------------------------------------------------------------------
async def comet_checks(label: str, comet: str, rpc: Rpc, block: int) -> list[Check]:
    out: list[Check] = []
    base: dict[str, str | int] = {}

    async def contract() -> str:
        await has_code(rpc, comet, block)
        base["token"] = address_word(await view(rpc, comet, "baseToken()", block))
        base["feed"] = address_word(await view(rpc, comet, "baseTokenPriceFeed()", block))
        base["n"] = word(await view(rpc, comet, "numAssets()", block))
        base["symbol"] = await symbol_of(rpc, str(base["token"]), block)
        return f"{comet} is a Comet: base {base['symbol']} ({base['token']}), {base['n']} collateral assets"

    out.append(await check(f"{label}: comet", contract))
    if not out[-1].ok:
        return out
    feeds: list[tuple[str, str]] = [(str(base["symbol"]), str(base["feed"]))]
    for i in range(int(base["n"])):

        async def asset(i: int = i) -> str:
            raw = await view(rpc, comet, "getAssetInfo(uint8)", block, uint_arg(i), shown=f"getAssetInfo({i})")
            w = words(raw)
            if len(w) < 8:
                raise ValueError(f"getAssetInfo({i}) returned {len(raw)} bytes")
            token, feed = address_word(raw, 1), address_word(raw, 2)
            if w[0] != i or token == ZERO or feed == ZERO:
                raise ValueError(f"getAssetInfo({i}) is malformed: offset {w[0]}, asset {token}, feed {feed}")
            symbol = await symbol_of(rpc, token, block)
            feeds.append((symbol, feed))
            return (f"{symbol} ({token}), feed {feed}, liquidateCF {format_fixed(w[5] * 100, 18)}%, "
                    f"liquidationFactor {format_fixed(w[6] * 100, 18)}%")

        out.append(await check(f"{label}: asset {i}", asset))
    for symbol, feed in feeds:

        async def price(feed: str = feed) -> str:
            raw = await view(rpc, comet, "getPrice(address)", block, bytes(12) + bytes.fromhex(feed[2:]),
                              shown=f"getPrice({feed})")
            value = word(raw)
            if value == 0 or value >= 2**255:
                raise ValueError(f"getPrice({feed}) is {value}, not a positive price")
            return f"getPrice({feed}) = {format_fixed(value, 8)} USD"

        out.append(await check(f"{label}: price {symbol}", price))
    return out


# -- start-up probe (keeper.preflight): the kind of contract, and the market's tokens --

async def probe(rpc: Rpc, m: Any, block: int) -> list[str]:
    """A Comet answers baseToken(), numAssets() and getAssetInfo(i)."""
    key, comet = "comet", m.comet
    await contract(rpc, key, comet, block)
    base = address_word(await ask(rpc, key, comet, "baseToken()", block, "a Compound V3 Comet"))
    n = word(await ask(rpc, key, comet, "numAssets()", block, "a Compound V3 Comet"))
    tokens = [base]
    for i in range(min(n, 255)):
        raw = await ask(rpc, key, comet, "getAssetInfo(uint8)", block, "a Compound V3 Comet", uint_arg(i))
        tokens.append(address_word(raw, 1))
    return tokens

