"""`keeper doctor`: is the node there, is it the right chain, is every address what it claims?

One ``Check`` (one line) per question. Aave V3 markets are checked here; Morpho Blue and
Compound V3 markets in keeper.doctor_protocols."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from keeper.chain.abi import address_word, call_data, word
from keeper.chain.multicall import Call, Multicall
from keeper.chain.rpc import Rpc
from keeper.config import Config
from keeper.errors import KeeperError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


async def check(name: str, fn: Callable[[], Awaitable[str]]) -> Check:
    try:
        return Check(name, True, await fn())
    except (KeeperError, ValueError) as e:
        return Check(name, False, str(e))


async def run_doctor(cfg: Config, rpc: Rpc) -> list[Check]:
    checks: list[Check] = []
    block_box: list[int] = []

    async def reachable() -> str:
        block_box.append(await rpc.block_number())
        return f"block {block_box[0]}"

    checks.append(await check("rpc reachable", reachable))
    if not checks[-1].ok:
        return checks
    block = block_box[0]

    async def chain() -> str:
        got = await rpc.chain_id()
        want = cfg.chain.chain_id
        if want is not None and got != want:
            raise ValueError(f"chain id is {got}, config says {want}")
        return f"chain id {got}" + ("" if want is not None else " (not pinned in config)")

    checks.append(await check("chain id", chain))

    async def multicall() -> str:
        if not await rpc.code(cfg.chain.multicall3, block):
            raise ValueError(f"no contract at {cfg.chain.multicall3}")
        mc = Multicall(rpc, cfg.chain.multicall3)
        (ts,) = await mc.run_strict([Call(cfg.chain.multicall3, call_data("getCurrentBlockTimestamp()"))], block)
        return f"Multicall3 at {cfg.chain.multicall3} answers (timestamp {word(ts)})"

    checks.append(await check("multicall3", multicall))
    mc = Multicall(rpc, cfg.chain.multicall3)
    from keeper.doctor_protocols import (  # they import Check from here
        comet_checks,
        morpho_checks,
    )

    for i, m in enumerate(cfg.markets):
        label = m.name or f"{m.protocol}-{i}"
        if m.protocol == "aave_v3":
            checks.extend(await _aave_checks(label, m.pool_addresses_provider, rpc, mc, block))
        elif m.protocol == "morpho_blue":
            checks.extend(await morpho_checks(label, m, rpc, block))
        elif m.protocol == "compound_v3":
            checks.extend(await comet_checks(label, m, rpc, block))
        else:
            checks.append(Check(f"{label}: protocol", False, f"doctor has no checks for {m.protocol!r}"))
    from keeper.doctor_dex import dex_checks  # it imports Check from here

    checks.extend(await dex_checks(cfg, rpc, block))
    return checks


async def _aave_checks(label: str, provider: str, rpc: Rpc, mc: Multicall, block: int) -> list[Check]:
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
    return out
