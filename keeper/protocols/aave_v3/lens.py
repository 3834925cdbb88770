"""Bulk account reads for Aave V3 through keeper's own lens contract, AaveAccountsReader
(contracts/src/AaveAccountsReader.sol), run with ``eth_call`` + a state override so that
nothing is deployed. One eth_call returns everything the health math needs for ~1,000
accounts as a flat word list; the Python side does almost no ABI work.

The runtime code comes from the package data (contracts/src compiled by npm solc when the
package is built; see keeper.package_data). Where it cannot be had, or a node refuses state
overrides, ``AaveV3Adapter`` falls back to the Multicall3 path, which reads the same values,
and logs that once with the reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from functools import cache, partial

import structlog

from keeper.chain.abi import selector
from keeper.chain.rpc import Rpc
from keeper.chain.window import ahead
from keeper.errors import DevnetError, SourceError
from keeper.package_data import own_contract  # shipped in the package (build step)
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState, UserReserve

# An address with no code on any chain we know of; the override exists only inside the call.
READER_ADDRESS = "0x000000000000000000000000000000000000Ca11"
log = structlog.get_logger("keeper.aave_reader")
READ = selector("read(address,address[],uint256,address[])")


_fallback_logged: set[str] = set()


def log_fallback(market: str, error: Exception) -> None:
    """Say once per process, with the reason, that reads go the slower Multicall3 way."""
    first = not _fallback_logged
    _fallback_logged.add(market)
    (log.warning if first else log.debug)(
        "reader.unavailable", market=market, reason=str(error), fallback="multicall3",
        note="accounts are read in two Multicall3 phases: same values, more requests")


@cache
def reader_code() -> str:
    """0x-hex runtime code of AaveAccountsReader. DevnetError when it cannot be built."""
    code = own_contract("AaveAccountsReader").get("deployedBytecode", "")
    if not code or code == "0x":
        raise DevnetError("AaveAccountsReader has no runtime code in the build")
    return code if code.startswith("0x") else "0x" + code


def _w(n: int) -> bytes:
    return n.to_bytes(32, "big")


def encode_read(pool: str, tokens: Sequence[str], stable_mask: int, users: Sequence[str]) -> bytes:
    """read(pool, tokens[], stableMask, users[]) calldata, by hand (head + two arrays)."""
    head = bytes(12) + bytes.fromhex(pool[2:])
    tok = b"".join(bytes(12) + bytes.fromhex(t[2:]) for t in tokens)
    usr = b"".join(bytes(12) + bytes.fromhex(u[2:]) for u in users)
    users_at = 4 * 32 + 32 + len(tok)
    return b"".join((READ, head, _w(4 * 32), _w(stable_mask), _w(users_at),
                     _w(len(tokens)), tok, _w(len(users)), usr))


def _layout(cfg: int, ids: Sequence[int], stable: set[int]) -> tuple[tuple[int, int, bool, bool], ...]:
    """Per reserve the contract wrote words for: (id, 0/1 variable debt word, stable word?,
    collateral word?), in the contract's order. Many accounts share a configuration."""
    out = []
    for i in ids:
        if cfg >> (2 * i) == 0:
            break
        bits = (cfg >> (2 * i)) & 3
        if bits:
            out.append((i, bits & 1, bool(bits & 1) and i in stable, bool(bits & 2)))
    return tuple(out)


def parse_read(raw: bytes, users: Sequence[str], market: AaveMarketState,
               stable: set[int]) -> list[AaveAccount]:
    """Walk the flat word list in the order the contract wrote it."""
    if len(raw) < 64:
        raise SourceError("AaveAccountsReader: short return data")
    count = int.from_bytes(raw[32:64], "big")
    if len(raw) < 64 + 32 * count:
        raise SourceError("AaveAccountsReader: return data shorter than its length")
    frm = int.from_bytes
    words = [frm(raw[p:p + 32], "big") for p in range(64, 64 + 32 * count, 32)]
    ids = sorted(r.id for r in market.reserves)
    layouts: dict[int, tuple[tuple[int, int, bool, bool], ...]] = {}
    out: list[AaveAccount] = []
    k = 0
    for user in users:
        if k + 2 > count:
            raise SourceError("AaveAccountsReader: fewer words than accounts")
        cfg, emode = words[k], words[k + 1]
        k += 2
        layout = layouts.get(cfg)
        if layout is None:
            layout = layouts[cfg] = _layout(cfg, ids, stable)
        reserves = []
        for i, borrowing, has_stable, collateral in layout:
            vdebt = sdebt = scaled_a = 0
            if borrowing:
                vdebt = words[k]
                k += 1
                if has_stable:
                    sdebt = words[k]
                    k += 1
            if collateral:
                scaled_a = words[k]
                k += 1
            reserves.append(UserReserve(i, scaled_a, vdebt, sdebt))
        out.append(AaveAccount(user, cfg, emode, tuple(reserves)))
    if k != count:
        raise SourceError(f"AaveAccountsReader: {count - k} words left unread")
    return out


async def iter_read_accounts(rpc: Rpc, accounts: Sequence[str], market: AaveMarketState,
                             stable: set[int], chunk: int = 1000
                             ) -> AsyncIterator[list[AaveAccount]]:
    """``accounts`` at ``market.block``, one eth_call per ``chunk`` accounts, a few read ahead
    of the caller (keeper.chain.window); yields each chunk as it arrives, so the caller's
    math overlaps the node's work."""
    reserves = sorted(market.reserves, key=lambda r: r.id)
    if [r.id for r in reserves] != list(range(len(reserves))):
        raise SourceError("AaveAccountsReader needs reserve ids 0..n-1 without gaps")
    tokens = [t for r in reserves for t in (r.a_token, r.variable_debt_token, r.stable_debt_token)]
    mask = sum(1 << i for i in stable)
    override = {READER_ADDRESS: {"code": reader_code()}}

    async def one(users: list[str]) -> list[AaveAccount]:
        (raw,) = await rpc.calls([(READER_ADDRESS, encode_read(market.pool, tokens, mask, users))],
                                 market.block, override)
        return parse_read(raw, users, market, stable)

    async for got in ahead(partial(one, list(accounts[i:i + chunk])) for i in range(0, len(accounts), chunk)):
        yield got


async def read_accounts(rpc: Rpc, accounts: Sequence[str], market: AaveMarketState,
                        stable: set[int], chunk: int = 1000) -> list[AaveAccount]:
    """All ``accounts`` at ``market.block`` (order of arrival, not of ``accounts``)."""
    out: list[AaveAccount] = []
    async for part in iter_read_accounts(rpc, accounts, market, stable, chunk):
        out.extend(part)
    return out
