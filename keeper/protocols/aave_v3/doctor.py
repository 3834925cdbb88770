"""`keeper doctor` checks of an Aave V3 market: the provider, the contracts it names (each
points back to it) and the reserve list."""

from __future__ import annotations

from typing import Any

from keeper.chain.abi import address_array, address_word, call_data
from keeper.chain.multicall import Call, Multicall
from keeper.chain.probe import ProbeError, ask, contract
from keeper.chain.rpc import Rpc
from keeper.checks import Check, check
from keeper.protocols.aave_v3 import reader36

ZERO = "0x0000000000000000000000000000000000000000"


async def aave_checks(label: str, provider: str, rpc: Rpc, mc: Multicall, block: int) -> list[Check]:
    out: list[Check] = []
    found: dict[str, str] = {}

    async def is_provider() -> str:
        if not await rpc.code(provider, block):
            raise ValueError(f"no contract at {provider}")
        ok_raw = await mc.run([Call(provider, call_data("getPool()")),
                               Call(provider, call_data("getPriceOracle()")),
                               Call(provider, call_data("getPoolDataProvider()")),
                               Call(provider, call_data("getMarketId()"))], block)
        if not all(ok for ok, _ in ok_raw[:3]):
            raise ValueError(f"{provider} does not answer getPool/getPriceOracle/getPoolDataProvider")
        found.update(pool=address_word(ok_raw[0][1]), oracle=address_word(ok_raw[1][1]),
                     data_provider=address_word(ok_raw[2][1]))
        return f"{provider} is a PoolAddressesProvider"

    out.append(await check(f"{label}: addresses provider", is_provider))
    if not out[-1].ok:
        return out
    for role in ("pool", "oracle", "data_provider"):
        addr = found[role]

        async def points_back(addr: str = addr, role: str = role) -> str:
            if not await rpc.code(addr, block):
                raise ValueError(f"{role} {addr} has no code")
            (raw,) = await mc.run_strict([Call(addr, call_data("ADDRESSES_PROVIDER()"))], block)
            if address_word(raw).lower() != provider.lower():
                raise ValueError(f"{role} {addr} belongs to provider {address_word(raw)}")
            return f"{addr} points back to the provider"

        out.append(await check(f"{label}: {role}", points_back))

    async def reserves() -> str:
        (raw,) = await mc.run_strict([Call(found["pool"], call_data("getReservesList()"))], block)
        n = (len(raw) - 64) // 32
        if n <= 0:
            raise ValueError("the Pool lists no reserves")
        return f"{n} reserves"

    out.append(await check(f"{label}: reserves", reserves))

    async def version() -> str:  # which math keeper will use (reader36.probe_version)
        v, revision, emode_ids = await reader36.probe_version(mc, found["pool"], block)
        rev = f", Pool revision {revision}" if revision else ""
        if v >= reader36.V36:
            return f"Aave 3.6 math and rules (3.2+ views{rev}; e-mode categories {list(emode_ids)})"
        return f"Aave 3.0.x math and rules{rev}"

    out.append(await check(f"{label}: version", version))
    return out


# -- start-up probe (keeper.preflight): the kind of contract, and the market's tokens --

async def probe(rpc: Rpc, m: Any, block: int) -> list[str]:
    """A PoolAddressesProvider answers getPool() with a Pool that answers getReservesList()."""
    key, provider = "pool_addresses_provider", m.pool_addresses_provider
    await contract(rpc, key, provider, block)
    pool = address_word(await ask(rpc, key, provider, "getPool()", block, "an Aave V3 PoolAddressesProvider"))
    if pool == ZERO or not await rpc.code(pool, block):
        raise ProbeError(key, f"getPool() of {provider} is {pool}, which has no code")
    raw = await ask(rpc, key, pool, "getReservesList()", block,
                     f"an Aave V3 Pool (from {provider}.getPool())")
    reserves = address_array(raw)
    if not reserves:
        raise ProbeError(key, f"the Pool {pool} lists no reserves")
    return reserves

