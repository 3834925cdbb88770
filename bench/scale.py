"""Benchmark keeper at scale: N positions per protocol (Aave V3, Morpho Blue, Compound V3) on
one devnet, one Engine watching the three markets, as ``keeper run`` would.

    .venv/bin/python bench/scale.py                      # 50,000 per protocol (150,000 in all)
    .venv/bin/python bench/scale.py --n 5000 --trace     # quick, with tracemalloc's top lines
    .venv/bin/python bench/scale.py --n 20000 --keep DIR --port 8731   # seed, leave anvil up
    .venv/bin/python bench/scale.py --reuse DIR          # measure against it (again and again)

Seeding runs in this process; keeper runs in a fresh child process (``--measure``), so its RSS
is keeper's alone. Prints, per run: the child's RSS before the engine and after its first
scan (everything a tick needs is then in memory), its peak RSS, the first scan, a full scan at a new block, an idle block tick
(nothing happened), a block whose WETH price moves 1 %, and the safety-net scan beside the
block path (Engine.scan_beside): how long it reads and merges, and the block ticks (each a
1 % WETH move) handled while it runs. A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keeper.chain.rpc import Rpc  # noqa: E402
from keeper.config import load_config  # noqa: E402
from keeper.devnet.anvil import start_anvil, stop_anvil  # noqa: E402
from keeper.devnet.api import connect, deploy, get_price, set_price  # noqa: E402
from keeper.devnet.comet import deploy_comet  # noqa: E402
from keeper.devnet.lifecycle import comet_config_toml, morpho_config_toml  # noqa: E402
from keeper.devnet.morpho import deploy_morpho  # noqa: E402
from keeper.devnet.state import DevnetInfo, keeper_config_toml  # noqa: E402
from keeper.engine import Engine  # noqa: E402
from keeper.log import configure_logging  # noqa: E402
from keeper.memory import release  # noqa: E402
from keeper.store import Store  # noqa: E402

SEED = 7


def rss_mib(field: str = "VmRSS") -> float:
    """VmRSS now, or VmHWM: the high-water mark so far."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def seed(url: str, n: int, tmp: Path) -> tuple[Path, DevnetInfo]:
    t0 = time.perf_counter()
    info = await deploy(url, n_borrowers=n, seed=SEED)
    w3 = connect(url)
    try:
        minfo = await deploy_morpho(w3, info, n, SEED)
        cinfo = await deploy_comet(w3, info, n, SEED)
    finally:
        await w3.provider.disconnect()
    print(f"# seeded 3 x {n:,} borrowers in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    cfg = tmp / "keeper.toml"
    cfg.write_text(keeper_config_toml(info) + morpho_config_toml(minfo) + comet_config_toml(cinfo)
                   + f'\n[store]\npath = "{tmp / "k.sqlite"}"\n')
    return cfg, info


async def move(url: str, info, bps: int) -> int:
    w3 = connect(url)
    try:
        old = await get_price(w3, info, "WETH")
        return (await set_price(w3, info, "WETH", old * (10_000 + bps) // 10_000)).block
    finally:
        await w3.provider.disconnect()


def ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


async def measure(cfg_path: Path, feed: str, deployer: str, trace: bool) -> dict:
    gc.collect()
    out: dict = {"rss_before": rss_mib()}
    info = SimpleNamespace(feeds={"WETH": feed}, deployer=deployer)  # all set_price needs
    cfg = load_config(cfg_path)
    url = cfg.chain.rpc_url.get_secret_value()
    rpc = Rpc(url, 120)
    store = Store(cfg.store.path)
    engine = Engine(cfg, rpc, store)
    if trace:
        tracemalloc.start(3)
    block = await rpc.block_number()
    t0 = time.perf_counter()
    await engine.index(block)
    out["index"] = ms(t0)
    out["hwm_index"] = rss_mib("VmHWM")
    t0 = time.perf_counter()
    await engine.full_scan(block)
    out["first"] = ms(t0)
    out["hwm_first"] = rss_mib("VmHWM")
    gc.collect()
    out["rss_after"] = rss_mib()
    release()  # as the runner does after a scan
    out["rss_trimmed"] = rss_mib()
    out["positions"] = sum(len(w.positions) for w in engine.watches)
    if trace:
        snap = tracemalloc.take_snapshot()
        out["traced_peak"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        print("# tracemalloc, top 25 lines holding memory after the first scan:", file=sys.stderr)
        for stat in snap.statistics("traceback")[:25]:
            where = " <- ".join(str(f) for f in list(stat.traceback)[:3])
            print(f"#   {stat.size / 2**20:7.1f} MiB {stat.count:>9,}  {where}", file=sys.stderr)
        total = sum(st.size for st in snap.statistics("filename"))
        print(f"#   held in all: {total / 2**20:.1f} MiB", file=sys.stderr)
        del snap
    await rpc.request("evm_mine", [])
    block += 1
    t0 = time.perf_counter()
    await engine.full_scan(block)
    out["full"] = ms(t0)
    await rpc.request("evm_mine", [])
    t0 = time.perf_counter()
    await engine.on_block(block + 1)
    out["idle"] = ms(t0)
    b = await move(url, info, -100)
    t0 = time.perf_counter()
    changed = await engine.on_block(b)
    out["move"], out["move_changed"] = ms(t0), len(changed)
    # the safety net beside the block path: price blocks keep coming while it runs
    lock = asyncio.Lock()
    t0 = time.perf_counter()
    scan = asyncio.create_task(engine.scan_beside(lock))
    ticks: list[float] = []
    sign = 1
    while not scan.done():
        await asyncio.sleep(0.2)
        if scan.done():
            break
        sign = -sign
        b = await move(url, info, 100 * sign)
        t1 = time.perf_counter()
        async with lock:
            await engine.on_block(b)
        ticks.append(ms(t1))
    out["merged"] = await scan
    out["beside"], out["ticks"] = ms(t0), ticks
    out["rss_end"] = rss_mib()
    out["rss_peak"] = rss_mib("VmHWM")
    store.close()
    await rpc.close()
    return out


def child(cfg: Path, info: DevnetInfo, trace: bool) -> dict:
    """keeper in a fresh process: its RSS is its own (not the seeding's)."""
    cmd = [sys.executable, __file__, "--measure", str(cfg), "--feed", info.feeds["WETH"],
           "--deployer", info.deployer] + (["--trace"] if trace else [])
    done = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50_000, help="borrowers per protocol")
    ap.add_argument("--trace", action="store_true", help="tracemalloc: where the memory goes")
    ap.add_argument("--keep", type=Path, help="seed, write the config to this directory, leave anvil running")
    ap.add_argument("--port", type=int, default=0, help="anvil's port (with --keep)")
    ap.add_argument("--reuse", type=Path, help="measure against a devnet --keep left running")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child: a keeper config
    ap.add_argument("--feed", help=argparse.SUPPRESS)
    ap.add_argument("--deployer", help=argparse.SUPPRESS)
    args = ap.parse_args()
    configure_logging(level="error")
    if args.measure:
        print(json.dumps(asyncio.run(measure(args.measure, args.feed, args.deployer, args.trace))))
        return
    if args.reuse:
        saved = json.loads((args.reuse / "info.json").read_text())
        cfg = args.reuse / "keeper.toml"
        store = Path(tempfile.mkdtemp(dir=args.reuse)) / "k.sqlite"  # a fresh store: discovery again
        cfg.write_text(saved["config"] + f'\n[store]\npath = "{store}"\n')
        report(child(cfg, SimpleNamespace(feeds={"WETH": saved["feed"]}, deployer=saved["deployer"]),
                     args.trace))
        return
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        proc = start_anvil(port=args.port, extra_args=("--prune-history", "64"))
        cfg, info = asyncio.run(seed(proc.rpc_url, args.n, args.keep))
        text = cfg.read_text().split("\n[store]")[0]
        (args.keep / "info.json").write_text(json.dumps(
            {"config": text, "feed": info.feeds["WETH"], "deployer": info.deployer, "pid": proc.pid, "n": args.n}))
        print(f"anvil pid {proc.pid} at {proc.rpc_url}; stop it by that pid")
        return
    # at most 64 block states in anvil's memory (seeding 3 x 50,000 without it passed 12 GiB);
    # keeper reads near the head, and discovery reads logs, which are kept
    proc = start_anvil(port=0, extra_args=("--prune-history", "64"))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg, info = asyncio.run(seed(proc.rpc_url, args.n, Path(tmp)))
            r = child(cfg, info, args.trace)
    finally:
        stop_anvil(proc.pid)
    report(r)


def report(r: dict) -> None:
    ticks = sorted(r["ticks"])
    during = (f"{len(ticks)} ticks, median {ticks[len(ticks) // 2]:.0f} ms, max {ticks[-1]:.0f} ms"
              if ticks else "none (the scan ended first)")
    print("| positions | keeper RSS: start / after first scan / peak | first scan | full scan | idle block "
          "| block with a 1 % WETH move | scan beside: time, accounts merged | block ticks during it |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    print(f"| {r['positions']:,} | {r['rss_before']:.0f} / {r['rss_after']:.0f} / {r['rss_peak']:.0f} MiB "
          f"| {r['first']:,.0f} ms | {r['full']:,.0f} ms | {r['idle']:,.0f} ms "
          f"| {r['move']:,.0f} ms ({r['move_changed']:,} recomputed) "
          f"| {r['beside']:,.0f} ms, {r['merged']:,} | {during} |")
    print(f"\nkeeper RSS high-water: after discovery {r.get('hwm_index', 0):.0f} MiB, after the first scan "
          f"{r.get('hwm_first', 0):.0f} MiB")
    print(f"discovery {r['index']:,.0f} ms; keeper RSS after the first scan and malloc_trim "
          f"{r['rss_trimmed']:.0f} MiB, at the end {r['rss_end']:.0f} MiB"
          + (f"; tracemalloc peak {r['traced_peak']:.1f} MiB" if "traced_peak" in r else ""))


if __name__ == "__main__":
    main()
