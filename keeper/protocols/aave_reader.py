"""Bulk account reads for Aave V3 through keeper's own lens contract, AaveAccountsReader
(contracts/src/AaveAccountsReader.sol), run with ``eth_call`` + a state override so that
nothing is deployed. One eth_call returns everything the health math needs for ~1,000
accounts as a flat word list; the Python side does almost no ABI work.

The runtime code comes from the solc build of contracts/src (compiled by npm solc on
first use, cached in build/). Where it cannot be had, or a node refuses state overrides,
``AaveV3Adapter`` falls back to the Multicall3 path, which reads the same values.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import cache

from keeper.chain.abi import selector
from keeper.chain.rpc import Rpc
from keeper.errors import DevnetError, SourceError
from keeper.model import AaveAccount, AaveMarketState, UserReserve

# An address with no code on any chain we know of; the override exists only inside the call.
READER_ADDRESS = "0x000000000000000000000000000000000000Ca11"
READ = selector("read(address,address[],uint256,address[])")


@cache
def reader_code() -> str:
    """0x-hex runtime code of AaveAccountsReader. DevnetError when it cannot be built."""
    from keeper.devnet.artifacts import load_own  # the solc build of contracts/src

    code = load_own("AaveAccountsReader").deployed_bytecode
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


def parse_read(raw: bytes, users: Sequence[str], market: AaveMarketState,
               stable: set[int]) -> list[AaveAccount]:
    """Walk the flat word list in the order the contract wrote it."""
    if len(raw) < 64:
        raise SourceError("AaveAccountsReader: short return data")
    count = int.from_bytes(raw[32:64], "big")
    frm = int.from_bytes
    pos = 64
    end = 64 + 32 * count
    ids = [r.id for r in market.reserves]
    out: list[AaveAccount] = []
    for user in users:
        if pos + 64 > end:
            raise SourceError("AaveAccountsReader: fewer words than accounts")
        cfg = frm(raw[pos:pos + 32], "big")
        emode = frm(raw[pos + 32:pos + 64], "big")
        pos += 64
        reserves = []
        for i in ids:
            bits = (cfg >> (2 * i)) & 3
            if not bits:
                if cfg >> (2 * i) == 0:
                    break
                continue
            vdebt = sdebt = scaled_a = 0
            if bits & 1:
                vdebt = frm(raw[pos:pos + 32], "big")
                pos += 32
                if i in stable:
                    sdebt = frm(raw[pos:pos + 32], "big")
                    pos += 32
            if bits & 2:
                scaled_a = frm(raw[pos:pos + 32], "big")
                pos += 32
            reserves.append(UserReserve(i, scaled_a, vdebt, sdebt))
        out.append(AaveAccount(user, cfg, emode, tuple(reserves)))
    if pos != end:
        raise SourceError(f"AaveAccountsReader: {(end - pos) // 32} words left unread")
    return out


async def read_accounts(rpc: Rpc, accounts: Sequence[str], market: AaveMarketState,
                        stable: set[int], chunk: int = 1000, batch: int = 2) -> list[AaveAccount]:
    """All ``accounts`` at ``market.block``: ceil(n / chunk) eth_calls, ``batch`` per request."""
    reserves = sorted(market.reserves, key=lambda r: r.id)
    if [r.id for r in reserves] != list(range(len(reserves))):
        raise SourceError("AaveAccountsReader needs reserve ids 0..n-1 without gaps")
    tokens = [t for r in reserves for t in (r.a_token, r.variable_debt_token, r.stable_debt_token)]
    mask = sum(1 << i for i in stable)
    chunks = [list(accounts[i:i + chunk]) for i in range(0, len(accounts), chunk)]
    override = {READER_ADDRESS: {"code": reader_code()}}
    groups = [chunks[g:g + batch] for g in range(0, len(chunks), batch)]

    async def one(group: list[list[str]]) -> list[bytes]:
        return await rpc.calls([(READER_ADDRESS, encode_read(market.pool, tokens, mask, c))
                                for c in group], market.block, override)

    # groups go out concurrently: a node answers them on several cores
    results = await asyncio.gather(*(one(g) for g in groups))
    out: list[AaveAccount] = []
    for group, raws in zip(groups, results, strict=True):
        for users, raw in zip(group, raws, strict=True):
            out.extend(parse_read(raw, users, market, stable))
    return out
