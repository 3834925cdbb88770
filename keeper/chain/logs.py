"""Chunked ``eth_getLogs``: walks a block range in chunks that shrink when the node
refuses a range (too many results, range too wide, timeout) and grow back after
successes, and that follow the density of logs seen (about ``TARGET_LOGS`` per answer, so
a dense range never arrives as one answer of hundreds of MiB). Yields per chunk so a caller
can checkpoint as it goes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from keeper.addresses import checksum_hex
from keeper.chain.rpc import Rpc
from keeper.errors import SourceError


@dataclass(frozen=True, slots=True)
class Log:
    address: str
    topics: tuple[bytes, ...]
    data: bytes
    block: int
    tx_hash: str
    log_index: int


def _parse(raw: dict[str, Any]) -> Log:
    return Log(
        address=raw["address"],
        topics=tuple(bytes.fromhex(t[2:]) for t in raw["topics"]),
        data=bytes.fromhex(raw["data"][2:]),
        block=int(raw["blockNumber"], 16),
        tx_hash=raw["transactionHash"],
        log_index=int(raw["logIndex"], 16),
    )


def topic_address(topic: bytes) -> str:
    """The address in an indexed address topic (not checksummed)."""
    return "0x" + topic[12:].hex()


def topic_account(topic: bytes) -> str:
    """The EIP-55 address in an indexed address topic (keeper.addresses: fast)."""
    return checksum_hex(topic[12:].hex())


TARGET_LOGS = 5_000  # logs per eth_getLogs answer the range aims at (memory: ~1.5 KiB each parsed)
FIRST_SPAN = 1  # blocks in a scan's first request, before its density is known (x8 per answer
# after: ~5 more requests to reach 10,000; bench/scale.py's devnet packs ~8,000 logs in one block)


class LogScanner:
    """Remembers what range a node accepts, across calls.

    ``ok`` is the largest range the node has answered, ``bad`` the smallest it refused.
    After a refusal the next size bisects between them, so the chunk settles just under
    the node's limit in a few probes instead of halving blindly or bouncing back up.
    """

    def __init__(self, rpc: Rpc, max_range: int = 10_000, min_range: int = 1,
                 target_logs: int = TARGET_LOGS):
        self.rpc = rpc
        self.max_range = max_range
        self.min_range = min_range
        self.ok = 0
        self.bad: int | None = None
        self.target_logs = target_logs

    @property
    def chunk(self) -> int:
        if self.bad is None:
            return self.max_range
        if self.bad - self.ok > max(1, self.ok // 8):
            return max(self.min_range, (self.ok + self.bad) // 2)
        return max(self.min_range, self.ok)

    async def fetch(self, addresses: list[str], topics: list[Any], from_block: int,
                    to_block: int) -> list[Log]:
        logs: list[Log] = []
        async for _, chunk in self.scan(addresses, topics, from_block, to_block):
            logs.extend(chunk)
        return logs

    async def scan(self, addresses: list[str], topics: list[Any], from_block: int,
                   to_block: int) -> AsyncIterator[tuple[int, list[Log]]]:
        """Yields (last block covered, logs in that chunk) in block order."""
        start = from_block
        span = max(self.min_range, min(self.max_range, FIRST_SPAN))  # from the density seen so far
        while start <= to_block:
            end = min(to_block, start + min(self.chunk, span) - 1)
            size = end - start + 1
            flt = {"address": addresses, "topics": topics,
                   "fromBlock": hex(start), "toBlock": hex(end)}
            try:
                raw = await self.rpc.request("eth_getLogs", [flt])
            except SourceError:
                if size <= self.min_range:
                    raise
                self.bad = size if self.bad is None else min(self.bad, size)
                if self.ok >= size:  # the node's limit went down: start over below it
                    self.ok = size // 2
                continue
            if size == self.chunk:  # a full-size answer teaches us; a short tail does not
                self.ok = max(self.ok, size)
            # about target_logs per answer: a dense range (discovery of 50,000 borrowers) is
            # read in many small answers instead of a few of hundreds of MiB; growth x8 at most
            span = max(self.min_range, min(self.max_range, 8 * size,
                                           size * self.target_logs // max(1, len(raw))))
            logs = [_parse(r) for r in raw]
            del raw
            yield end, logs
            start = end + 1
