"""`keeper doctor` checks of Morpho Blue and Compound V3 markets (Aave V3's are in keeper.doctor).

Each check is one line. They call the contracts with plain ``eth_call`` at the pinned block
(not Multicall3, so a broken Multicall3 does not hide what is wrong with a market), and only
functions the real contracts have: Morpho Blue's ``owner``, ``feeRecipient``,
``idToMarketParams``, ``isIrmEnabled``, ``isLltvEnabled`` and the oracle's ``price``; Comet's
``baseToken``, ``baseTokenPriceFeed``, ``numAssets``, ``getAssetInfo`` and ``getPrice``.
"""

from __future__ import annotations

from keeper.chain.abi import (
    address_word,
    call_data,
    string_or_bytes32,
    uint_arg,
    word,
    words,
)
from keeper.chain.rpc import Rpc
from keeper.config import CompoundV3Market, MorphoBlueMarket
from keeper.doctor import Check, check
from keeper.errors import KeeperError
from keeper.protocols.morpho_blue.math import MarketParams
from keeper.protocols.morpho_blue.reader import market_id
from keeper.units import format_fixed

ZERO = "0x0000000000000000000000000000000000000000"


async def _view(rpc: Rpc, target: str, signature: str, block: int, *args: bytes,
                shown: str | None = None) -> bytes:
    """Return data of a view call, at least one word; a revert or no data is a ValueError
    that names the call."""
    what = shown or signature
    try:
        raw = await rpc.call(target, call_data(signature, *args), block)
    except KeeperError as e:
        raise ValueError(f"{target} does not answer {what}: {e}") from None
    if len(raw) < 32:
        raise ValueError(f"{target} does not answer {what} (returned {len(raw)} bytes)")
    return raw


async def _symbol(rpc: Rpc, token: str, block: int) -> str:
    try:
        return string_or_bytes32(await rpc.call(token, call_data("symbol()"), block)) or token
    except (KeeperError, ValueError, UnicodeDecodeError):  # no symbol: the address will do
        return token


async def _has_code(rpc: Rpc, address: str, block: int) -> None:
    if not await rpc.code(address, block):
        raise ValueError(f"no contract at {address}")


# -- Morpho Blue -----------------------------------------------------------------------
async def morpho_checks(label: str, m: MorphoBlueMarket, rpc: Rpc, block: int) -> list[Check]:
    out: list[Check] = []
    morpho = m.morpho

    async def contract() -> str:
        await _has_code(rpc, morpho, block)
        owner = address_word(await _view(rpc, morpho, "owner()", block))
        fee_recipient = address_word(await _view(rpc, morpho, "feeRecipient()", block))
        return f"{morpho} is Morpho Blue (owner {owner}, fee recipient {fee_recipient})"

    out.append(await check(f"{label}: morpho", contract))
    if not out[-1].ok:
        return out
    for mid in m.market_ids:
        out.extend(await _morpho_market_checks(f"{label}: market {mid[:10]}", morpho, mid, rpc, block))
    return out


async def _morpho_market_checks(name: str, morpho: str, mid: str, rpc: Rpc, block: int) -> list[Check]:
    found: list[MarketParams] = []

    async def exists() -> str:
        raw = await _view(rpc, morpho, "idToMarketParams(bytes32)", block, bytes.fromhex(mid[2:]),
                          shown=f"idToMarketParams({mid})")
        w = words(raw)
        if len(w) < 5:
            raise ValueError(f"idToMarketParams({mid}) returned {len(raw)} bytes")
        p = MarketParams(*(address_word(raw, i) for i in range(4)), w[4])
        if p.loan_token == ZERO:
            raise ValueError(f"market {mid} does not exist on {morpho} (idToMarketParams is empty)")
        if market_id(p) != mid:
            raise ValueError(f"idToMarketParams({mid}) returned params whose id is {market_id(p)}")
        found.append(p)
        loan, coll = await _symbol(rpc, p.loan_token, block), await _symbol(rpc, p.collateral_token, block)
        return f"{mid} exists: {coll}/{loan}, LLTV {format_fixed(p.lltv * 100, 18)}%"

    out = [await check(name, exists)]
    if not out[-1].ok:
        return out
    p = found[0]

    async def oracle() -> str:
        await _has_code(rpc, p.oracle, block)
        price = word(await _view(rpc, p.oracle, "price()", block))
        if price == 0:
            raise ValueError(f"oracle {p.oracle} price() is 0")
        return f"oracle {p.oracle} price() = {price} (1e36 scale)"

    async def irm() -> str:
        if not word(await _view(rpc, morpho, "isIrmEnabled(address)", block, bytes(12) + bytes.fromhex(p.irm[2:]),
                                shown=f"isIrmEnabled({p.irm})")):
            raise ValueError(f"IRM {p.irm} is not enabled on {morpho}")
        return f"IRM {p.irm} is enabled"

    async def lltv() -> str:
        shown = format_fixed(p.lltv * 100, 18)
        if not word(await _view(rpc, morpho, "isLltvEnabled(uint256)", block, uint_arg(p.lltv),
                                shown=f"isLltvEnabled({p.lltv})")):
            raise ValueError(f"LLTV {shown}% ({p.lltv}) is not enabled on {morpho}")
        return f"LLTV {shown}% is enabled"

    for what, fn in (("oracle", oracle), ("irm", irm), ("lltv", lltv)):
        out.append(await check(f"{name} {what}", fn))
    return out


# -- Compound V3 -----------------------------------------------------------------------
async def comet_checks(label: str, m: CompoundV3Market, rpc: Rpc, block: int) -> list[Check]:
    out: list[Check] = []
    comet = m.comet
    base: dict[str, str | int] = {}

    async def contract() -> str:
        await _has_code(rpc, comet, block)
        base["token"] = address_word(await _view(rpc, comet, "baseToken()", block))
        base["feed"] = address_word(await _view(rpc, comet, "baseTokenPriceFeed()", block))
        base["n"] = word(await _view(rpc, comet, "numAssets()", block))
        base["symbol"] = await _symbol(rpc, str(base["token"]), block)
        return f"{comet} is a Comet: base {base['symbol']} ({base['token']}), {base['n']} collateral assets"

    out.append(await check(f"{label}: comet", contract))
    if not out[-1].ok:
        return out
    feeds: list[tuple[str, str]] = [(str(base["symbol"]), str(base["feed"]))]
    for i in range(int(base["n"])):

        async def asset(i: int = i) -> str:
            raw = await _view(rpc, comet, "getAssetInfo(uint8)", block, uint_arg(i), shown=f"getAssetInfo({i})")
            w = words(raw)
            if len(w) < 8:
                raise ValueError(f"getAssetInfo({i}) returned {len(raw)} bytes")
            token, feed = address_word(raw, 1), address_word(raw, 2)
            if w[0] != i or token == ZERO or feed == ZERO:
                raise ValueError(f"getAssetInfo({i}) is malformed: offset {w[0]}, asset {token}, feed {feed}")
            symbol = await _symbol(rpc, token, block)
            feeds.append((symbol, feed))
            return (f"{symbol} ({token}), feed {feed}, liquidateCF {format_fixed(w[5] * 100, 18)}%, "
                    f"liquidationFactor {format_fixed(w[6] * 100, 18)}%")

        out.append(await check(f"{label}: asset {i}", asset))
    for symbol, feed in feeds:

        async def price(feed: str = feed) -> str:
            raw = await _view(rpc, comet, "getPrice(address)", block, bytes(12) + bytes.fromhex(feed[2:]),
                              shown=f"getPrice({feed})")
            value = word(raw)
            if value == 0 or value >= 2**255:
                raise ValueError(f"getPrice({feed}) is {value}, not a positive price")
            return f"getPrice({feed}) = {format_fixed(value, 8)} USD"

        out.append(await check(f"{label}: price {symbol}", price))
    return out
