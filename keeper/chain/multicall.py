"""Multicall3 ``aggregate3`` batching, pinned to one block.

Canonical Multicall3 lives at the same address on every chain, so the same read
path serves the devnet and real networks. A full scan sends tens of thousands of
sub-calls, so the ``Call3[]`` / ``Result[]`` ABI coding here is done by hand with
fixed offsets (checked against eth-abi in tests/unit/test_multicall.py); chunks go
to the node as one JSON-RPC batch when there are several.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils import keccak

from keeper.chain.rpc import Rpc
from keeper.errors import SourceError

MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11"
AGGREGATE3 = keccak(text="aggregate3((address,bool,bytes)[])")[:4]
GET_CURRENT_BLOCK_TIMESTAMP = keccak(text="getCurrentBlockTimestamp()")[:4]
_ZERO_PAD = bytes(32)


@dataclass(frozen=True, slots=True)
class Call:
    target: str  # 0x-address
    data: bytes  # selector + encoded arguments
    allow_failure: bool = True


def _word(n: int) -> bytes:
    return n.to_bytes(32, "big")


def encode_call3(c: Call) -> bytes:
    """The tail of one Call3 tuple: target, allowFailure, offset 0x60, length, padded data."""
    data = c.data
    return b"".join((
        bytes(12) + bytes.fromhex(c.target[2:]),
        _TRUE if c.allow_failure else _FALSE,
        _OFFSET_60,
        _word(len(data)),
        data + bytes((-len(data)) % 32),
    ))


_TRUE, _FALSE, _OFFSET_60 = (1).to_bytes(32, "big"), bytes(32), (0x60).to_bytes(32, "big")


def encode_aggregate3(calls: list[Call]) -> bytes:
    """selector + abi.encode(Call3[]) with (address target, bool allowFailure, bytes callData).

    No cache of encoded tuples between scans: looking a new Call up costs more than encoding
    it (its bytes are hashed anew), and the cache held every account's calls (tens of MiB at
    100,000 positions; bench/scale.py).
    """
    n = len(calls)
    tails = [encode_call3(c) for c in calls]
    offsets = []
    pos = 32 * n  # offsets are relative to the start of the offsets area
    for t in tails:
        offsets.append(pos.to_bytes(32, "big"))
        pos += len(t)
    return b"".join((AGGREGATE3, _word(0x20), _word(n), *offsets, *tails))


def decode_aggregate3(raw: bytes) -> list[tuple[bool, bytes]]:
    """abi.decode(Result[]) with (bool success, bytes returnData)."""
    if len(raw) < 64:
        raise SourceError("multicall: short return data")
    base = int.from_bytes(raw[0:32], "big")
    n = int.from_bytes(raw[base:base + 32], "big")
    head = base + 32
    out: list[tuple[bool, bytes]] = []
    frm = int.from_bytes
    for i in range(n):
        item = head + frm(raw[head + 32 * i:head + 32 * i + 32], "big")
        ok = raw[item + 31] == 1
        data_at = item + frm(raw[item + 32:item + 64], "big")
        size = frm(raw[data_at:data_at + 32], "big")
        out.append((ok, raw[data_at + 32:data_at + 32 + size]))
    if len(out) != n:
        raise SourceError("multicall: result count mismatch")
    return out


class Multicall:
    """Runs many view calls at one block in as few round trips as the limits allow."""

    def __init__(self, rpc: Rpc, address: str = MULTICALL3, max_calls: int = 2000,
                 max_batch: int = 8):
        self.rpc = rpc
        self.address = address
        self.max_calls = max_calls  # sub-calls per eth_call
        self.max_batch = max_batch  # eth_calls per HTTP round trip

    async def run(self, calls: list[Call], block: int) -> list[tuple[bool, bytes]]:
        """Results in the order of ``calls``. A failed sub-call is (False, revert data)."""
        if not calls:
            return []
        chunks = [calls[i:i + self.max_calls] for i in range(0, len(calls), self.max_calls)]
        results: list[tuple[bool, bytes]] = []
        for g in range(0, len(chunks), self.max_batch):
            group = chunks[g:g + self.max_batch]
            raws = await self.rpc.calls([(self.address, encode_aggregate3(c)) for c in group], block)
            for chunk, raw in zip(group, raws, strict=True):
                decoded = decode_aggregate3(raw)
                if len(decoded) != len(chunk):
                    raise SourceError("multicall: result count mismatch")
                results.extend(decoded)
        return results

    async def run_strict(self, calls: list[Call], block: int) -> list[bytes]:
        """Like ``run`` but any failed sub-call is a SourceError naming its target."""
        out = []
        for call, (ok, data) in zip(calls, await self.run(calls, block), strict=True):
            if not ok:
                raise SourceError(f"call to {call.target} reverted at block {block}")
            out.append(data)
        return out
