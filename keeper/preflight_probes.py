"""What each protocol's configured contract must answer before keeper starts (keeper.preflight).

One probe per protocol: it proves the contract at the configured address has code and is
the kind the config says (it answers that protocol's own views), and returns the tokens of
the market, which the ``[[protect]]`` actions are checked against. A problem is a
:class:`ProbeError` naming the market's key (``pool_addresses_provider``, ``morpho``,
``market_ids[1]``, ``comet``). Plain ``eth_call`` at the pinned block, no Multicall3.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from keeper.chain.abi import address_array, address_word, call_data, uint_arg, word, words
from keeper.chain.rpc import Rpc
from keeper.doctor_protocols import ZERO, _view

Probe = Callable[[Rpc, Any, int], Awaitable[list[str]]]


class ProbeError(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


async def _contract(rpc: Rpc, field: str, address: str, block: int) -> None:
    if not await rpc.code(address, block):
        raise ProbeError(field, f"no contract at {address}")


async def _ask(rpc: Rpc, field: str, target: str, signature: str, block: int, kind: str,
               *args: bytes) -> bytes:
    try:
        return await _view(rpc, target, signature, block, *args)
    except ValueError as e:
        raise ProbeError(field, f"{e}: not {kind}") from None


async def aave_v3(rpc: Rpc, m: Any, block: int) -> list[str]:
    """A PoolAddressesProvider answers getPool() with a Pool that answers getReservesList()."""
    key, provider = "pool_addresses_provider", m.pool_addresses_provider
    await _contract(rpc, key, provider, block)
    pool = address_word(await _ask(rpc, key, provider, "getPool()", block, "an Aave V3 PoolAddressesProvider"))
    if pool == ZERO or not await rpc.code(pool, block):
        raise ProbeError(key, f"getPool() of {provider} is {pool}, which has no code")
    raw = await _ask(rpc, key, pool, "getReservesList()", block,
                     f"an Aave V3 Pool (from {provider}.getPool())")
    reserves = address_array(raw)
    if not reserves:
        raise ProbeError(key, f"the Pool {pool} lists no reserves")
    return reserves


async def morpho_blue(rpc: Rpc, m: Any, block: int) -> list[str]:
    """Morpho Blue answers idToMarketParams(id) with a market for every configured id."""
    await _contract(rpc, "morpho", m.morpho, block)
    tokens: list[str] = []
    for k, mid in enumerate(m.market_ids):
        raw = await _ask(rpc, "morpho", m.morpho, "idToMarketParams(bytes32)", block, "Morpho Blue",
                         bytes.fromhex(mid[2:]))
        if len(words(raw)) < 5:
            raise ProbeError("morpho", f"idToMarketParams of {m.morpho} returned {len(raw)} bytes: not Morpho Blue")
        loan, collateral = address_word(raw, 0), address_word(raw, 1)
        if loan == ZERO:
            raise ProbeError(f"market_ids[{k}]", f"market {mid} does not exist on {m.morpho}")
        tokens += [loan, collateral]
    return tokens


async def compound_v3(rpc: Rpc, m: Any, block: int) -> list[str]:
    """A Comet answers baseToken(), numAssets() and getAssetInfo(i)."""
    key, comet = "comet", m.comet
    await _contract(rpc, key, comet, block)
    base = address_word(await _ask(rpc, key, comet, "baseToken()", block, "a Compound V3 Comet"))
    n = word(await _ask(rpc, key, comet, "numAssets()", block, "a Compound V3 Comet"))
    tokens = [base]
    for i in range(min(n, 255)):
        raw = await _ask(rpc, key, comet, "getAssetInfo(uint8)", block, "a Compound V3 Comet", uint_arg(i))
        tokens.append(address_word(raw, 1))
    return tokens


PROBES: dict[str, Probe] = {"aave_v3": aave_v3, "morpho_blue": morpho_blue, "compound_v3": compound_v3}
