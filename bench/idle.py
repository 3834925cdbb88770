"""Benchmark the block tick of an idle block (no event, no price move) per protocol on the
devnet, with and without keeper's triggers computed ahead (keeper.triggers), in one run.

    .venv/bin/python bench/idle.py                                  # 10,000 positions each
    .venv/bin/python bench/idle.py --protocols morpho_blue --size 1000

Per protocol a fresh anvil with that many borrowers and two engines on the same chain: one
with ``ahead=False`` (before: every position that a market move reaches is recomputed, on
Morpho Blue and Compound V3 all of them each block, since interest moves them) and one with
the triggers (after: only the positions whose interest crossing has come). Both scan at one
block (cold) and at the next (warm, timed: what computing the triggers adds to a full
scan), then the chain mines idle blocks, 12 s apart and then one day apart (interest then
crosses thresholds, so the triggers do fire), and both engines run ``on_block`` for each.
After every block the triggered engine's statuses are compared, position by position, with
a full recompute: every position evaluated again at the block (``_full_recompute``).
Wall time includes the block's reads (the market at the block, its logs: 2-4 requests to
anvil on the same two cores); CPU time (``time.process_time``) is keeper's own work in that
tick, the reads' waiting left out. Prints a markdown table on stdout. A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keeper.chain.rpc import Rpc  # noqa: E402
from keeper.config import load_config  # noqa: E402
from keeper.devnet.anvil import start_anvil, stop_anvil  # noqa: E402
from keeper.devnet.api import connect, deploy  # noqa: E402
from keeper.devnet.comet import deploy_comet  # noqa: E402
from keeper.devnet.lifecycle import comet_config_toml, morpho_config_toml  # noqa: E402
from keeper.devnet.morpho import deploy_morpho  # noqa: E402
from keeper.devnet.state import keeper_config_toml  # noqa: E402
from keeper.engine import Engine  # noqa: E402
from keeper.log import configure_logging  # noqa: E402
from keeper.memory import release, tune  # noqa: E402
from keeper.store import Store  # noqa: E402

PROTOCOLS = ("morpho_blue", "compound_v3", "aave_v3")
SEED = 7
PHASES = (("12 s", 12, 10), ("1 day", 86_400, 10))  # (label, seconds per block, blocks)


async def _config(url: str, protocol: str, n: int, tmp: Path) -> Path:
    info = await deploy(url, n_borrowers=n if protocol == "aave_v3" else 0, seed=SEED)
    toml = keeper_config_toml(info)
    if protocol != "aave_v3":
        w3 = connect(url)
        try:
            if protocol == "morpho_blue":
                extra = morpho_config_toml(await deploy_morpho(w3, info, n, SEED))
            else:
                extra = comet_config_toml(await deploy_comet(w3, info, n, SEED))
        finally:
            await w3.provider.disconnect()
        toml = f'[chain]\nrpc_url = "{info.rpc_url}"\nchain_id = {info.chain_id}\n' + extra
    path = tmp / "keeper.toml"
    path.write_text(toml)
    return path


async def run(protocol: str, n: int) -> dict:
    proc = start_anvil(port=0)
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            cfg = load_config(await _config(proc.rpc_url, protocol, n, tmp))
            rpc = Rpc(proc.rpc_url, 60)
            engines = {name: Engine(cfg, rpc, Store(tmp / f"{name}.sqlite"), ahead=(name == "after"))
                       for name in ("before", "after")}
            block = await rpc.block_number()
            for e in engines.values():
                await e.index(block)
                await e.full_scan(block)  # cold: every position new
            await rpc.request("evm_mine", [])
            block += 1
            scans = {}
            for name, e in engines.items():  # warm, as the safety-net scan runs: the triggers' cost
                t0 = time.perf_counter()
                await e.full_scan(block)
                scans[name] = time.perf_counter() - t0
            release()  # as keeper run does after a scan (gc.freeze, malloc_trim)
            out: dict = {"positions": len(engines["after"].positions()), "scans": scans}
            for label, dt, blocks in PHASES:
                times = {name: [] for name in engines}
                cpu = {name: [] for name in engines}
                recomputed, unequal, compared = [], 0, 0
                for _ in range(blocks):
                    await rpc.request("evm_increaseTime", [dt])
                    await rpc.request("evm_mine", [])
                    block += 1
                    for name, e in engines.items():
                        t0, c0 = time.perf_counter(), time.process_time()
                        changed = await e.on_block(block)
                        times[name].append(time.perf_counter() - t0)
                        cpu[name].append(time.process_time() - c0)
                        if name == "after":
                            recomputed.append(len(changed))
                    full = _full_recompute(engines["before"])
                    mine = {(p.market, p.account): p.status for p in engines["after"].positions()}
                    compared += len(full)
                    unequal += sum(1 for k, s in full.items() if mine.get(k) != s)
                out[label] = {"times": times, "cpu": cpu, "recomputed": recomputed, "unequal": unequal,
                              "compared": compared}
            for e in engines.values():
                e.store.close()
            await rpc.close()
            return out
    finally:
        stop_anvil(proc.pid)


def _full_recompute(e: Engine) -> dict:
    """Every position of ``e`` evaluated again at its watch's market (its raw accounts are
    re-read when an event names them, like the other engine's): the truth to compare with
    (``before`` alone is not: on Aave an idle block moves no reserve, so it recomputes nothing)."""
    out = {}
    for w in e.watches:
        ev = w.adapter.evaluator(w.market)
        for a in w.accounts.values():
            p = ev.position(a, e.thresholds, False)
            out[(p.market, p.account)] = p.status
    return out


def _ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:.1f} ms (max {max(xs) * 1000:.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    args = ap.parse_args()
    tune()  # the collector's and malloc's settings of keeper run (keeper.memory)
    configure_logging()  # keeper's own log lines to stderr
    rows = []
    for protocol in args.protocols:
        print(f"# {protocol}, {args.size} borrowers: deploying ...", file=sys.stderr, flush=True)
        rows.append((protocol, asyncio.run(run(protocol, args.size))))
    print("| protocol | positions | blocks | idle block before: wall, median (max) | after: wall | "
          "before: CPU | after: CPU | recomputed per block (after, median) | statuses equal to a full recompute "
          "| full scan before / after |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---|---:|")
    for protocol, r in rows:
        for label, _, blocks in PHASES:
            p = r[label]
            print(f"| {protocol} | {r['positions']:,} | {blocks} x {label} | {_ms(p['times']['before'])} "
                  f"| {_ms(p['times']['after'])} | {_ms(p['cpu']['before'])} | {_ms(p['cpu']['after'])} | {statistics.median(p['recomputed']):,.0f} "
                  f"| {p['compared'] - p['unequal']:,}/{p['compared']:,} "
                  f"| {r['scans']['before'] * 1000:,.0f} / {r['scans']['after'] * 1000:,.0f} ms |")


if __name__ == "__main__":
    main()
