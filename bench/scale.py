"""Benchmark keeper at scale: N positions per protocol (Aave V3, Morpho Blue, Compound V3) on
one devnet, one Engine watching the three markets, as ``keeper run`` would.

    .venv/bin/python bench/scale.py                      # 50,000 per protocol (150,000 in all)
    .venv/bin/python bench/scale.py --n 5000 --trace     # quick, with tracemalloc's top lines
    .venv/bin/python bench/scale.py --n 20000 --keep DIR --port 8731   # seed, leave anvil up
    .venv/bin/python bench/scale.py --reuse DIR          # measure against it (again and again)

Seeding runs in this process; keeper runs in a fresh child process (``--measure``), so its RSS
is keeper's alone. Prints, per run: the child's RSS before the engine and after its first
scan (everything a tick needs is then in memory), its peak RSS, the first scan, a full scan at a new block, an idle block tick
(nothing happened), a block whose WETH price moves 1 % and then the settle of its
triggers after it (Engine.settle, as keeper run does), and the safety-net scan beside the
block path (Engine.scan_beside): how long it reads and merges, and the block ticks (each a
1 % WETH move) handled while it runs. A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import statistics
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
from keeper.memory import release, tune  # noqa: E402
from keeper.store import Store  # noqa: E402

SEED = 7
MOVES = 5  # idle blocks and 1 % move blocks measured, alternating
SEEDED_WETH_E8 = 2_000 * 10**8  # the devnet's WETH price (keeper.devnet.params)


def reset_hwm() -> bool:
    """Start VmHWM again from the current RSS (Linux: ``5`` to /proc/self/clear_refs), so a
    later phase's high-water is its own; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


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


async def reset_price(url: str, info, price: int) -> None:
    """WETH back at the seeded price: each run's moves (net -1 %) would otherwise pile up."""
    w3 = connect(url)
    try:
        if await get_price(w3, info, "WETH") != price:
            await set_price(w3, info, "WETH", price)
    finally:
        await w3.provider.disconnect()


async def move(url: str, info, bps: int) -> int:
    w3 = connect(url)
    try:
        old = await get_price(w3, info, "WETH")
        return (await set_price(w3, info, "WETH", old * (10_000 + bps) // 10_000)).block
    finally:
        await w3.provider.disconnect()


def ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


class GcPauses:
    """The garbage collector's pauses (gc.callbacks): total ms and count per generation since
    ``take``; a full (generation 2) collection walks every object keeper holds."""

    def __init__(self) -> None:
        self.ms, self.n, self._t = [0.0, 0.0, 0.0], [0, 0, 0], 0.0
        gc.callbacks.append(self._on)

    def _on(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            g = info["generation"]
            self.ms[g] += (time.perf_counter() - self._t) * 1000
            self.n[g] += 1

    def take(self) -> str:
        """'full N x, M ms; young K ms' since the last take."""
        out = f"full {self.n[2]} x {self.ms[2]:.0f} ms, young {self.ms[0] + self.ms[1]:.0f} ms"
        self.ms, self.n = [0.0, 0.0, 0.0], [0, 0, 0]
        return out


async def measure(cfg_path: Path, feed: str, deployer: str, trace: bool, profile: bool = False,
                  plain_gc: bool = False) -> dict:
    gc.collect()
    if not plain_gc:
        tune()  # as the runner does
    pauses = GcPauses()
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
    out["gc_first"] = pauses.take()
    out["hwm_first"] = rss_mib("VmHWM")
    gc.collect()
    out["rss_after"] = rss_mib()
    release()  # as the runner does after a scan
    out["rss_trimmed"] = rss_mib()
    pauses.take()
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
    out["gc_full"] = pauses.take()
    out["hwm_full"] = rss_mib("VmHWM")
    release()
    idle, moves, changed_n, known, settled = [], [], [], [], []
    prof = cProfile.Profile() if profile else None
    engine.settle_beside = True  # as keeper run: a tick's triggers are kept after it (Engine.settle)
    lock = asyncio.Lock()
    for i in range(MOVES):  # idle and move blocks alternate: medians, not one draw
        await rpc.request("evm_mine", [])
        t0 = time.perf_counter()
        await engine.on_block(await rpc.block_number())
        await engine.settle(lock)
        idle.append(ms(t0))
        b = await move(url, info, -100 if i % 2 == 0 else 100)
        if prof is not None:
            prof.enable()
        t0 = time.perf_counter()
        changed = await engine.on_block(b)
        moves.append(ms(t0))
        known.append(engine.timing.get("evaluated_ms", float("nan")))
        t0 = time.perf_counter()
        await engine.settle(lock)
        settled.append(ms(t0))
        if prof is not None:
            prof.disable()
        changed_n.append(len(changed))
    out["idle"], out["idles"] = statistics.median(idle), idle
    out["move"], out["moves"], out["move_changed"] = statistics.median(moves), moves, max(changed_n)
    out["known"], out["knowns"] = statistics.median(known), known
    out["settled"], out["settles"] = statistics.median(settled), settled
    out["gc_blocks"] = pauses.take()
    if prof is not None:
        print("# cProfile of the move blocks, by own time:", file=sys.stderr)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    # the safety net beside the block path: price blocks keep coming while it runs (the scan
    # keeper run repeats every scan_interval_s: its own high-water, from the RSS before it)
    out["rss_before_beside"] = rss_mib()
    hwm_reset = reset_hwm()
    t0 = time.perf_counter()
    scan = asyncio.create_task(engine.scan_beside(lock))
    ticks: list[float] = []
    sign, settling = 1, None
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
        if settling is None or settling.done():  # as keeper.runner does after a tick
            settling = asyncio.create_task(engine.settle(lock))
    out["merged"] = await scan
    if settling is not None:
        await settling
    out["beside"], out["ticks"] = ms(t0), ticks
    if hwm_reset:
        out["hwm_beside"] = rss_mib("VmHWM")
    out["gc_beside"] = pauses.take()
    out["rss_end"] = rss_mib()
    out["rss_peak"] = rss_mib("VmHWM")
    store.close()
    await rpc.close()
    return out


def child(cfg: Path, info: DevnetInfo, trace: bool, profile: bool = False, plain_gc: bool = False) -> dict:
    """keeper in a fresh process: its RSS is its own (not the seeding's)."""
    flags = [f for f, on in (("--trace", trace), ("--profile", profile), ("--plain-gc", plain_gc)) if on]
    cmd = [sys.executable, __file__, "--measure", str(cfg), "--feed", info.feeds["WETH"],
           "--deployer", info.deployer, *flags]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50_000, help="borrowers per protocol")
    ap.add_argument("--trace", action="store_true", help="tracemalloc: where the memory goes")
    ap.add_argument("--profile", action="store_true", help="cProfile the move blocks (to stderr)")
    ap.add_argument("--plain-gc", action="store_true", help="no keeper.memory.tune: CPython's collector and glibc's malloc thresholds as they come")
    ap.add_argument("--keep", type=Path, help="seed, write the config to this directory, leave anvil running")
    ap.add_argument("--port", type=int, default=0, help="anvil's port (with --keep)")
    ap.add_argument("--reuse", type=Path, help="measure against a devnet --keep left running")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child: a keeper config
    ap.add_argument("--feed", help=argparse.SUPPRESS)
    ap.add_argument("--deployer", help=argparse.SUPPRESS)
    args = ap.parse_args()
    configure_logging(level="error")
    if args.measure:
        print(json.dumps(asyncio.run(measure(args.measure, args.feed, args.deployer, args.trace, args.profile, args.plain_gc))))
        return
    if args.reuse:
        saved = json.loads((args.reuse / "info.json").read_text())
        cfg = args.reuse / "keeper.toml"
        store = Path(tempfile.mkdtemp(dir=args.reuse)) / "k.sqlite"  # a fresh store: discovery again
        cfg.write_text(saved["config"] + f'\n[store]\npath = "{store}"\n')
        info = SimpleNamespace(feeds={"WETH": saved["feed"]}, deployer=saved["deployer"])
        url = load_config(cfg).chain.rpc_url.get_secret_value()
        asyncio.run(reset_price(url, info, saved.get("weth_e8", SEEDED_WETH_E8)))  # runs compare
        report(child(cfg, info, args.trace, args.profile, args.plain_gc))
        return
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        proc = start_anvil(port=args.port, extra_args=("--prune-history", "64"))
        cfg, info = asyncio.run(seed(proc.rpc_url, args.n, args.keep))
        text = cfg.read_text().split("\n[store]")[0]
        (args.keep / "info.json").write_text(json.dumps(
            {"config": text, "feed": info.feeds["WETH"], "deployer": info.deployer, "pid": proc.pid, "n": args.n,
             "weth_e8": SEEDED_WETH_E8}))
        print(f"anvil pid {proc.pid} at {proc.rpc_url}; stop it by that pid")
        return
    # at most 64 block states in anvil's memory (seeding 3 x 50,000 without it passed 12 GiB);
    # keeper reads near the head, and discovery reads logs, which are kept
    proc = start_anvil(port=0, extra_args=("--prune-history", "64"))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg, info = asyncio.run(seed(proc.rpc_url, args.n, Path(tmp)))
            r = child(cfg, info, args.trace, args.profile, args.plain_gc)
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
          f"{r.get('hwm_first', 0):.0f} MiB, after the second full scan {r.get('hwm_full', 0):.0f} MiB")
    if "hwm_beside" in r:
        print(f"keeper RSS through the safety-net scan beside the block ticks (keeper run's periodic scan): "
              f"{r['rss_before_beside']:.0f} MiB before, high-water {r['hwm_beside']:.0f} MiB")
    print(f"discovery {r['index']:,.0f} ms; keeper RSS after the first scan and malloc_trim "
          f"{r['rss_trimmed']:.0f} MiB, at the end {r['rss_end']:.0f} MiB"
          + (f"; tracemalloc peak {r['traced_peak']:.1f} MiB" if "traced_peak" in r else ""))
    print("idle blocks " + ", ".join(f"{t:,.0f}" for t in r["idles"]) + " ms; move blocks "
          + ", ".join(f"{t:,.0f}" for t in r["moves"]) + " ms (the table shows medians); in those, every "
          "market's statuses known (what decisions wait for) after " + ", ".join(f"{t:,.0f}" for t in r["knowns"])
          + " ms")
    print("after each move block, its triggers and bands kept beside the block path (Engine.settle) in "
          + ", ".join(f"{t:,.0f}" for t in r["settles"]) + " ms (median "
          + f"{r['settled']:,.0f}); an idle block is its tick and its settle")
    print(f"garbage collector pauses: first scan {r['gc_first']}; full scan {r['gc_full']}; "
          f"{MOVES} idle + {MOVES} move blocks {r['gc_blocks']}; scan beside {r['gc_beside']}")


if __name__ == "__main__":
    main()
