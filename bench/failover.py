"""Benchmark failover: what a fault on the first of two endpoints costs a read, on a fresh anvil.

    .venv/bin/python bench/failover.py            # every fault, 200 reads each

Two fault-injecting proxies (tests/faultproxy.py, loopback) in front of one anvil; keeper's
``Rpc`` over both with ``request_timeout_s = 1``. Per fault on endpoint 0 (endpoint 1 stays
healthy), a fresh ``Rpc``: the first read (it meets the fault and fails over in the same
call), then 200 reads (``eth_getBalance`` then ``eth_blockNumber``, alternating): their median
and worst time, how many requests still reached the faulty endpoint, and whether every read
was answered. Then "down, then back": endpoint 0 refuses connections, comes back, and the
time until it serves again is measured (it rests at most 2 s between tries).

Prints a markdown table. A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keeper.chain.rpc import Rpc  # noqa: E402
from keeper.devnet.anvil import start_anvil, stop_anvil  # noqa: E402
from keeper.errors import SourceError  # noqa: E402
from tests.faultproxy import FaultProxy  # noqa: E402

FAULTS = ["none", "drop", "http503", "http429", "garbage", "timeout", "down"]
READS = 200
ADDRESS = "0x70997970C51812dc3A010C7d01b50e44d17dc79C"


async def _read(rpc: Rpc, i: int) -> None:
    if i % 2:
        await rpc.block_number()
    else:
        await rpc.request("eth_getBalance", [ADDRESS, "latest"])


async def one(fault: str, a: FaultProxy, b: FaultProxy) -> str:
    a.set(None)
    if fault == "down":
        await a.stop()
    elif fault != "none":
        a.set(fault)
    rpc = Rpc([a.url, b.url], timeout_s=1.0, chain_id=31337)
    try:
        t0 = time.perf_counter()
        await _read(rpc, 0)
        first = time.perf_counter() - t0
        asked = len(a.methods)
        times, failed = [], 0
        for i in range(READS):
            t0 = time.perf_counter()
            try:
                await _read(rpc, i)
            except SourceError:
                failed += 1
            times.append(time.perf_counter() - t0)
        to_faulty = len(a.methods) - asked
        return (f"| {fault} | {first * 1000:.1f} ms | {statistics.median(times) * 1000:.2f} ms | "
                f"{max(times) * 1000:.1f} ms | {to_faulty} | {rpc.failovers} | {READS - failed}/{READS} |")
    finally:
        await rpc.close()
        if fault == "down":
            await a.start()
        a.set(None)


async def recovery(a: FaultProxy, b: FaultProxy) -> float:
    rpc = Rpc([a.url, b.url], timeout_s=1.0, chain_id=31337)
    try:
        await a.stop()
        for _ in range(6):
            await rpc.block_number()
        assert rpc.endpoints[0].down
        await a.start()
        t0 = time.perf_counter()
        while rpc.endpoints[0].down and time.perf_counter() - t0 < 30:
            await rpc.block_number()
            await asyncio.sleep(0.01)
        return time.perf_counter() - t0
    finally:
        await rpc.close()


async def main() -> None:
    log = Path(tempfile.mkdtemp()) / "anvil.log"
    proc = start_anvil(port=0, log_path=log)
    a, b = FaultProxy(proc.rpc_url), FaultProxy(proc.rpc_url)
    await a.start()
    await b.start()
    try:
        rows = [await one(f, a, b) for f in FAULTS]
        back = await recovery(a, b)
    finally:
        await a.close()
        await b.close()
        stop_anvil(proc.pid)
    print("| fault on endpoint 0 | first read | median read | worst read | requests to endpoint 0 after | failovers | answered |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(f"\nendpoint 0 down, then back: serving again {back:.2f} s after it came back")


if __name__ == "__main__":
    asyncio.run(main())
