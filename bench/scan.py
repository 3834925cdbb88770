"""Benchmark one full scan on the devnet: keeper (Multicall3, off-chain math) beside a
naive scan (one getUserAccountData eth_call per borrower), in the same run.

    .venv/bin/python bench/scan.py                 # 1,000 and 10,000 borrowers
    .venv/bin/python bench/scan.py --sizes 200     # quick

Prints a markdown table: wall time, HTTP requests and JSON-RPC calls, peak Python
memory of the scan (tracemalloc), and whether every health factor matched the Pool.
A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keeper.chain.abi import addr_arg, call_data, words  # noqa: E402
from keeper.chain.rpc import Rpc  # noqa: E402
from keeper.config import load_config  # noqa: E402
from keeper.devnet.anvil import start_anvil, stop_anvil  # noqa: E402
from keeper.devnet.api import deploy  # noqa: E402
from keeper.devnet.state import write_keeper_config  # noqa: E402
from keeper.engine import Engine  # noqa: E402
from keeper.store import Store  # noqa: E402
from keeper.units import UINT256_MAX  # noqa: E402


async def naive_scan(url: str, pool: str, accounts: list[str], block: int, concurrency: int):
    rpc = Rpc(url, 60)
    sem = asyncio.Semaphore(concurrency)

    async def one(a: str) -> int:
        async with sem:
            raw = await rpc.call(pool, call_data("getUserAccountData(address)", addr_arg(a)), block)
            return words(raw)[5]

    t0 = time.perf_counter()
    hfs = await asyncio.gather(*(one(a) for a in accounts))
    dt = time.perf_counter() - t0
    await rpc.close()
    return dt, rpc.counter, dict(zip(accounts, hfs))


async def keeper_scan(cfg_path: Path):
    cfg = load_config(cfg_path)
    rpc = Rpc(cfg.chain.rpc_url.get_secret_value(), 60)
    store = Store(cfg.store.path)
    engine = Engine(cfg, rpc, store)
    block = await rpc.block_number()
    t0 = time.perf_counter()
    await engine.index(block)
    t_index = time.perf_counter() - t0
    index_requests = rpc.counter.http_requests
    # first scan: cold (market discovery, every position new, flagged ones logged)
    t0 = time.perf_counter()
    c0 = rpc.counter.http_requests
    await engine.full_scan(block)
    first = time.perf_counter() - t0, rpc.counter.http_requests - c0
    # steady state: a later full re-read of every account at the next block
    await rpc.request("evm_mine", [])
    block += 1
    before = (rpc.counter.http_requests, rpc.counter.rpc_calls)
    t0 = time.perf_counter()
    positions = await engine.full_scan(block)
    dt = time.perf_counter() - t0
    reqs = rpc.counter.http_requests - before[0], rpc.counter.rpc_calls - before[1]
    # the same scan again under tracemalloc (which slows Python down): its peak memory
    tracemalloc.start()
    await engine.full_scan(block)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # a block tick with nothing new in it: the per-block cost when nothing changed
    await rpc.request("evm_mine", [])
    t1 = time.perf_counter()
    b0 = rpc.counter.http_requests
    await engine.on_block(block + 1)
    idle = time.perf_counter() - t1, rpc.counter.http_requests - b0
    pool = engine.watches[0].market.pool
    store.close()
    await rpc.close()
    return dict(positions=positions, time=dt, requests=reqs, peak=peak, block=block, pool=pool,
                index_time=t_index, index_requests=index_requests, idle=idle, first=first)


async def bench(n: int, concurrency: int) -> dict:
    proc = start_anvil(port=0)
    try:
        t0 = time.perf_counter()
        info = await deploy(proc.rpc_url, n_borrowers=n, seed=7)
        setup = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            cfg_path = write_keeper_config(info, Path(tmp) / "keeper.toml")
            k = await keeper_scan(cfg_path)
        accounts = sorted(p.account for p in k["positions"])
        nt, ncount, pool_hf = await naive_scan(proc.rpc_url, k["pool"], accounts, k["block"], concurrency)
        mismatches = sum(
            1 for p in k["positions"]
            if pool_hf[p.account] != (UINT256_MAX if p.health_factor_wad is None else p.health_factor_wad))
        return dict(n=n, positions=len(accounts), setup=setup, k=k, naive_time=nt,
                    naive_requests=ncount.http_requests, mismatches=mismatches)
    finally:
        stop_anvil(proc.pid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--naive-concurrency", type=int, default=8)
    args = ap.parse_args()
    rows = []
    for n in args.sizes:
        print(f"# {n} borrowers: deploying ...", file=sys.stderr, flush=True)
        r = asyncio.run(bench(n, args.naive_concurrency))
        rows.append(r)
        print(f"#   set-up {r['setup']:.1f} s, scan {r['k']['time']*1000:.0f} ms", file=sys.stderr)
    print("| borrowers | keeper full scan | HTTP requests (eth_calls) | naive scan | naive requests "
          "| peak memory (scan) | HF = Pool's | first scan | idle block tick | discovery |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        k = r["k"]
        print(f"| {r['positions']:,} | {k['time']*1000:.0f} ms | {k['requests'][0]} ({k['requests'][1]}) "
              f"| {r['naive_time']*1000:.0f} ms | {r['naive_requests']:,} | {k['peak']/2**20:.1f} MiB "
              f"| {r['positions'] - r['mismatches']}/{r['positions']} "
              f"| {k['first'][0]*1000:.0f} ms, {k['first'][1]} req | {k['idle'][0]*1000:.0f} ms, "
              f"{k['idle'][1]} req | {k['index_time']*1000:.0f} ms, {k['index_requests']} req |")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nprocess max RSS {rss:.0f} MiB; naive scan ran {args.naive_concurrency} requests at a time")


if __name__ == "__main__":
    main()
