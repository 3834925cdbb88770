"""`keeper doctor` checks of a Morpho Blue market: the contract (owner, fee recipient), the
market id (exists, params hash to it), its oracle, IRM and LLTV. Plain ``eth_call``s of
functions the real contract has."""

from __future__ import annotations

from typing import Any

from keeper.chain.abi import address_word, uint_arg, word, words
from keeper.chain.rpc import Rpc
from keeper.chain.views import has_code, symbol_of, view
from keeper.checks import Check, check
from keeper.chain.probe import ProbeError, ask, contract
from keeper.protocols.morpho_blue.math import MarketParams
from keeper.protocols.morpho_blue.reader import market_id
from keeper.units import format_fixed

ZERO = "0x0000000000000000000000000000000000000000"


# -- Morpho Blue -----------------------------------------------------------------------
async def morpho_checks(label: str, morpho: str, market_ids, rpc: Rpc, block: int) -> list[Check]:
    out: list[Check] = []

    async def contract() -> str:
        await has_code(rpc, morpho, block)
        owner = address_word(await view(rpc, morpho, "owner()", block))
        fee_recipient = address_word(await view(rpc, morpho, "feeRecipient()", block))
        return f"{morpho} is Morpho Blue (owner {owner}, fee recipient {fee_recipient})"

    out.append(await check(f"{label}: morpho", contract))
    if not out[-1].ok:
        return out
    for mid in market_ids:
        out.extend(await _morpho_market_checks(f"{label}: market {mid[:10]}", morpho, mid, rpc, block))
    return out


async def _morpho_market_checks(name: str, morpho: str, mid: str, rpc: Rpc, block: int) -> list[Check]:
    found: list[MarketParams] = []

    async def exists() -> str:
        raw = await view(rpc, morpho, "idToMarketParams(bytes32)", block, bytes.fromhex(mid[2:]),
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
        loan, coll = await symbol_of(rpc, p.loan_token, block), await symbol_of(rpc, p.collateral_token, block)
        return f"{mid} exists: {coll}/{loan}, LLTV {format_fixed(p.lltv * 100, 18)}%"

    out = [await check(name, exists)]
    if not out[-1].ok:
        return out
    p = found[0]

    async def oracle() -> str:
        await has_code(rpc, p.oracle, block)
        price = word(await view(rpc, p.oracle, "price()", block))
        if price == 0:
            raise ValueError(f"oracle {p.oracle} price() is 0")
        return f"oracle {p.oracle} price() = {price} (1e36 scale)"

    async def irm() -> str:
        if not word(await view(rpc, morpho, "isIrmEnabled(address)", block, bytes(12) + bytes.fromhex(p.irm[2:]),
                                shown=f"isIrmEnabled({p.irm})")):
            raise ValueError(f"IRM {p.irm} is not enabled on {morpho}")
        return f"IRM {p.irm} is enabled"

    async def lltv() -> str:
        shown = format_fixed(p.lltv * 100, 18)
        if not word(await view(rpc, morpho, "isLltvEnabled(uint256)", block, uint_arg(p.lltv),
                                shown=f"isLltvEnabled({p.lltv})")):
            raise ValueError(f"LLTV {shown}% ({p.lltv}) is not enabled on {morpho}")
        return f"LLTV {shown}% is enabled"

    for what, fn in (("oracle", oracle), ("irm", irm), ("lltv", lltv)):
        out.append(await check(f"{name} {what}", fn))
    return out


# -- start-up probe (keeper.preflight): the kind of contract, and the market's tokens --

async def probe(rpc: Rpc, m: Any, block: int) -> list[str]:
    """Morpho Blue answers idToMarketParams(id) with a market for every configured id."""
    await contract(rpc, "morpho", m.morpho, block)
    tokens: list[str] = []
    for k, mid in enumerate(m.market_ids):
        raw = await ask(rpc, "morpho", m.morpho, "idToMarketParams(bytes32)", block, "Morpho Blue",
                         bytes.fromhex(mid[2:]))
        if len(words(raw)) < 5:
            raise ProbeError("morpho", f"idToMarketParams of {m.morpho} returned {len(raw)} bytes: not Morpho Blue")
        loan, collateral = address_word(raw, 0), address_word(raw, 1)
        if loan == ZERO:
            raise ProbeError(f"market_ids[{k}]", f"market {mid} does not exist on {m.morpho}")
        tokens += [loan, collateral]
    return tokens

