"""Benchmark one full scan on the devnet, per protocol: keeper's Engine (Multicall3, off-chain
math) beside a naive scan (one eth_call per borrower), in the same run, on a fresh anvil.

    .venv/bin/python bench/scan.py                                   # every protocol, 1,000 and 10,000
    .venv/bin/python bench/scan.py --sizes 200                       # quick
    .venv/bin/python bench/scan.py --protocols morpho_blue --sizes 10000

Per protocol and size, a fresh anvil with that protocol's borrowers (Morpho Blue and Compound
V3 deploy over an Aave devnet with no borrowers: its tokens and feeds) and a keeper config with
only that market. The naive scan, 8 requests in flight:

* aave_v3: ``getUserAccountData(user)`` per borrower;
* morpho_blue: ``position(id, user)`` per borrower plus ``market(id)`` per market;
* compound_v3: ``isLiquidatable(user)`` per borrower.

The "correct" column:

* aave_v3: keeper's health factor equals the Pool's ``getUserAccountData``, to the wei;
* morpho_blue: keeper found every seeded (market, borrower) position, and its raw positions
  equal the naive ``position(id, user)``;
* compound_v3: after WETH and WBTC fall 25 % (before keeper starts) and a transaction
  accrues the Comet at the scanned block (so the view is current), keeper's liquidatable
  flags equal Comet's own ``isLiquidatable``.

Prints a markdown table on stdout (keeper's own log lines go to stderr, as ``keeper run``
writes them): wall time, HTTP requests and JSON-RPC calls, peak Python memory of the scan
(tracemalloc). A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keeper.chain.abi import addr_arg, call_data, word, words  # noqa: E402
from keeper.chain.rpc import Rpc  # noqa: E402
from keeper.config import load_config  # noqa: E402
from keeper.devnet.anvil import start_anvil, stop_anvil  # noqa: E402
from keeper.devnet.api import apply_price_change, connect, deploy, get_price, set_price  # noqa: E402
from keeper.devnet.comet import deploy_comet  # noqa: E402
from keeper.devnet.lifecycle import comet_config_toml, morpho_config_toml  # noqa: E402
from keeper.devnet.morpho import deploy_morpho  # noqa: E402
from keeper.devnet.rpc import rpc as devnet_rpc  # noqa: E402
from keeper.devnet.rpc import wait_receipt  # noqa: E402
from keeper.devnet.state import DevnetInfo, keeper_config_toml  # noqa: E402
from keeper.engine import Engine  # noqa: E402
from keeper.log import configure_logging  # noqa: E402
from keeper.model import Status  # noqa: E402
from keeper.store import Store  # noqa: E402
from keeper.units import UINT256_MAX  # noqa: E402

PROTOCOLS = ("aave_v3", "morpho_blue", "compound_v3")
SEED = 7
CRASH = (("WETH", "-25%"), ("WBTC", "-25%"))  # compound_v3 only: some positions liquidatable


# -- naive scans: one eth_call per borrower, ``concurrency`` in flight -------------------
async def _naive(url: str, requests: list[tuple[str, bytes]], block: int, concurrency: int):
    rpc = Rpc(url, 60)
    sem = asyncio.Semaphore(concurrency)

    async def one(to: str, data: bytes) -> bytes:
        async with sem:
            return await rpc.call(to, data, block)

    t0 = time.perf_counter()
    raws = await asyncio.gather(*(one(to, data) for to, data in requests))
    dt = time.perf_counter() - t0
    await rpc.close()
    return dt, rpc.counter.http_requests, raws


# -- keeper: index, a cold first scan, a timed full scan, its memory, an idle tick --------
async def keeper_scan(cfg_path: Path, next_block: Callable[[Rpc], Awaitable[None]]) -> dict:
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
    await next_block(rpc)
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
    watches = [(w.key, w.market, dict(w.accounts)) for w in engine.watches]
    store.close()
    await rpc.close()
    return {"positions": positions, "time": dt, "requests": reqs, "peak": peak, "block": block,
            "watches": watches, "index_time": t_index, "index_requests": index_requests, "idle": idle,
            "first": first}


async def _mine(rpc: Rpc) -> None:
    await rpc.request("evm_mine", [])


@dataclass
class Result:
    protocol: str
    n: int
    setup: float
    k: dict
    naive_time: float
    naive_requests: int
    correct: str


# -- per protocol ---------------------------------------------------------------------
async def bench_aave(url: str, n: int, tmp: Path, concurrency: int) -> tuple[float, dict, tuple, str]:
    t0 = time.perf_counter()
    info = await deploy(url, n_borrowers=n, seed=SEED)
    setup = time.perf_counter() - t0
    cfg = tmp / "keeper.toml"
    cfg.write_text(keeper_config_toml(info))
    k = await keeper_scan(cfg, _mine)
    pool = k["watches"][0][1].pool
    accounts = sorted(p.account for p in k["positions"])
    nt, nreq, raws = await _naive(url, [(pool, call_data("getUserAccountData(address)", addr_arg(a)))
                                        for a in accounts], k["block"], concurrency)
    pool_hf = {a: words(r)[5] for a, r in zip(accounts, raws, strict=True)}
    equal = sum(1 for p in k["positions"]
                if pool_hf[p.account] == (UINT256_MAX if p.health_factor_wad is None else p.health_factor_wad))
    return setup, k, (nt, nreq), f"HF = Pool's {equal:,}/{len(accounts):,}"


def _chain_toml(info: DevnetInfo) -> str:
    return f'[chain]\nrpc_url = "{info.rpc_url}"\nchain_id = {info.chain_id}\n'


async def bench_morpho(url: str, n: int, tmp: Path, concurrency: int) -> tuple[float, dict, tuple, str]:
    t0 = time.perf_counter()
    info = await deploy(url, n_borrowers=0, seed=SEED)  # tokens and feeds
    w3 = connect(url)
    try:
        minfo = await deploy_morpho(w3, info, n, SEED)
    finally:
        await w3.provider.disconnect()
    setup = time.perf_counter() - t0
    cfg = tmp / "keeper.toml"
    cfg.write_text(_chain_toml(info) + morpho_config_toml(minfo))
    k = await keeper_scan(cfg, _mine)
    seeded = [(p["market_id"], p["address"]) for p in minfo.positions]
    requests = [(minfo.morpho, call_data("market(bytes32)", bytes.fromhex(mid[2:]))) for mid in minfo.market_ids]
    requests += [(minfo.morpho, call_data("position(bytes32,address)", bytes.fromhex(mid[2:]), addr_arg(a)))
                 for mid, a in seeded]
    nt, nreq, raws = await _naive(url, requests, k["block"], concurrency)
    naive = {s: tuple(words(r)[:3]) for s, r in zip(seeded, raws[len(minfo.market_ids):], strict=True)}
    ours = {}
    for (key, market, accounts) in k["watches"]:
        for a, pos in accounts.items():
            ours[(market.id, a)] = (pos.supply_shares, pos.borrow_shares, pos.collateral)
    found = sum(1 for s in seeded if s in ours)
    equal = sum(1 for s, v in naive.items() if ours.get(s) == v)
    extra = len(ours) - found
    return setup, k, (nt, nreq), (f"found {found:,}/{len(seeded):,} seeded{f' (+{extra} more)' if extra else ''}, "
                                  f"{equal:,} = position()")


async def bench_comet(url: str, n: int, tmp: Path, concurrency: int) -> tuple[float, dict, tuple, str]:
    t0 = time.perf_counter()
    info = await deploy(url, n_borrowers=0, seed=SEED)  # tokens and feeds
    w3 = connect(url)
    try:
        cinfo = await deploy_comet(w3, info, n, SEED)
        setup = time.perf_counter() - t0
        for symbol, step in CRASH:
            await set_price(w3, info, symbol, apply_price_change(await get_price(w3, info, symbol), step))
    finally:
        await w3.provider.disconnect()

    async def accrue(_rpc: Rpc) -> None:
        """The next block holds one accrueAccount: Comet's stored indexes are current there,
        so its isLiquidatable view says what absorb would."""
        node = connect(url)
        try:
            tx = {"from": info.deployer, "to": cinfo.comet, "gas": hex(500_000),
                  "data": "0x" + call_data("accrueAccount(address)", addr_arg(info.deployer)).hex()}
            receipt = await wait_receipt(node, await devnet_rpc(node, "eth_sendTransaction", [tx]))
            assert int(receipt["status"], 16) == 1, "accrueAccount reverted"
        finally:
            await node.provider.disconnect()

    cfg = tmp / "keeper.toml"
    cfg.write_text(_chain_toml(info) + comet_config_toml(cinfo))
    k = await keeper_scan(cfg, accrue)
    accounts = sorted(p.account for p in k["positions"])
    nt, nreq, raws = await _naive(url, [(cinfo.comet, call_data("isLiquidatable(address)", addr_arg(a)))
                                        for a in accounts], k["block"], concurrency)
    view = {a: word(r) != 0 for a, r in zip(accounts, raws, strict=True)}
    equal = sum(1 for p in k["positions"] if (p.status == Status.LIQUIDATABLE) == view[p.account])
    missing = len(set(cinfo.borrowers) - set(accounts))
    return setup, k, (nt, nreq), (f"liquidatable = isLiquidatable {equal:,}/{len(accounts):,} "
                                  f"({sum(view.values()):,} liq.)" + (f", {missing} missed" if missing else ""))


BENCHES = {"aave_v3": bench_aave, "morpho_blue": bench_morpho, "compound_v3": bench_comet}


async def bench(protocol: str, n: int, concurrency: int) -> Result:
    proc = start_anvil(port=0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            setup, k, (nt, nreq), correct = await BENCHES[protocol](proc.rpc_url, n, Path(tmp), concurrency)
        n_positions = len(k.pop("positions"))
        del k["watches"]  # keep only numbers: a big live heap would slow the next rows' GC
        return Result(protocol, n_positions, setup, k, nt, nreq, correct)
    finally:
        stop_anvil(proc.pid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    ap.add_argument("--naive-concurrency", type=int, default=8)
    args = ap.parse_args()
    configure_logging()  # keeper's own log lines (position.flagged ...) to stderr, as keeper run
    rows = []
    for protocol in args.protocols:
        for n in args.sizes:
            print(f"# {protocol}, {n} borrowers: deploying ...", file=sys.stderr, flush=True)
            r = asyncio.run(bench(protocol, n, args.naive_concurrency))
            rows.append(r)
            print(f"#   {protocol}: set-up {r.setup:.1f} s, scan {r.k['time']*1000:.0f} ms",
                  file=sys.stderr, flush=True)
    print("| protocol | positions | keeper full scan | HTTP requests (eth_calls) | naive scan | naive requests "
          "| peak memory (scan) | correct | first scan | idle block tick | discovery |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for r in rows:
        k = r.k
        print(f"| {r.protocol} | {r.n:,} | {k['time']*1000:.0f} ms | {k['requests'][0]} ({k['requests'][1]}) "
              f"| {r.naive_time*1000:,.0f} ms | {r.naive_requests:,} | {k['peak']/2**20:.1f} MiB "
              f"| {r.correct} "
              f"| {k['first'][0]*1000:,.0f} ms, {k['first'][1]} req | {k['idle'][0]*1000:.0f} ms, "
              f"{k['idle'][1]} req | {k['index_time']*1000:,.0f} ms, {k['index_requests']} req |")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nprocess max RSS {rss:.0f} MiB; naive scan ran {args.naive_concurrency} requests at a time")


if __name__ == "__main__":
    main()
