"""`make demo`: a local chain with a real Aave V3 market, the keeper watching it, a price
crash, and positions moving from safe to liquidatable in the terminal.

Steps: start anvil and deploy (keeper.devnet), print a first scan, start ``keeper run``
as its own process (its log lines stream to this terminal), crash WETH and WBTC in
steps with real feed transactions, stop the keeper with SIGTERM, print the final scan
and check it against the Pool's own getUserAccountData. Everything it started, it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from keeper.chain.rpc import Rpc
from keeper.config import load_config
from keeper.devnet.anvil import start_anvil, stop_anvil
from keeper.devnet.api import apply_price_change, connect, deploy, get_price, set_price
from keeper.devnet.state import keeper_config_toml
from keeper.engine import Engine
from keeper.log import configure_logging
from keeper.model import Status
from keeper.store import Store
from keeper.units import UINT256_MAX, format_fixed

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
CRASH = [("WETH", "-10%"), ("WBTC", "-10%"), ("WETH", "-10%"), ("WBTC", "-15%"), ("WETH", "-15%"),
         ("WETH", "-10%")]


async def scan_once(cfg_path: Path, title: str) -> tuple[list, int]:
    from keeper.cli import print_table

    cfg = load_config(cfg_path)
    rpc = Rpc(cfg.chain.rpc_url.get_secret_value())
    store = Store(cfg.store.path.with_name("demo-scan.sqlite"))
    try:
        engine = Engine(cfg, rpc, store, drops="all")
        block = await rpc.block_number()
        await engine.index(block)
        positions = await engine.full_scan(block)
        print_table(positions, block, title, console)
        w = engine.watches[0]
        accounts = sorted(w.accounts)
        views = await w.adapter.pool_account_data(accounts, block)
        same = sum(1 for a, v in zip(accounts, views)
                   if v.health_factor_wad == (w.positions[a].health_factor_wad or UINT256_MAX))
        console.print(f"off-chain health factors equal to Pool.getUserAccountData: "
                      f"[bold]{same}/{len(accounts)}[/] (to the wei)")
        return positions, block
    finally:
        store.close()
        await rpc.close()


def counts(positions) -> str:
    c = {s: 0 for s in Status}
    for p in positions:
        c[p.status] += 1
    return ", ".join(f"{s.value} {n}" for s, n in c.items())


async def crash(rpc_url: str, info, pause_s: float) -> None:
    w3 = connect(rpc_url)
    for symbol, step in CRASH:
        old = await get_price(w3, info, symbol)
        change = await set_price(w3, info, symbol, apply_price_change(old, step))
        console.print(f"[bold magenta]>>> price {symbol} {step}: {format_fixed(change.old_e8, 8, 2)} -> "
                      f"{format_fixed(change.new_e8, 8, 2)} USD (block {change.block})[/]")
        await asyncio.sleep(pause_s)


def main() -> None:
    ap = argparse.ArgumentParser(description="keeper demo on a local anvil")
    ap.add_argument("--borrowers", type=int, default=40)
    ap.add_argument("--dir", type=Path, default=Path(".devnet/demo"))
    ap.add_argument("--pause", type=float, default=2.0, help="seconds between price steps")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    configure_logging(level="error")  # this process prints tables; `keeper run` prints the log
    for old in args.dir.glob("*.sqlite*"):
        old.unlink()
    console.print(Rule("keeper demo: a real Aave V3 market on a local anvil"))
    proc = start_anvil(port=0, log_path=str(args.dir / "anvil.log"))
    keeper_proc = None
    try:
        t0 = time.perf_counter()
        info = asyncio.run(deploy(proc.rpc_url, n_borrowers=args.borrowers, seed=1))
        console.print(f"anvil pid {proc.pid} at {proc.rpc_url}; Aave V3 deployed with "
                      f"{len(info.borrowers)} borrowers in {time.perf_counter() - t0:.1f} s; "
                      f"PoolAddressesProvider {info.pool_addresses_provider}")
        cfg_path = args.dir / "keeper.toml"
        cfg_path.write_text(keeper_config_toml(info) + "\n[monitor]\nscan_interval_s = 5\n"
                            "index_interval_s = 30\n\n[store]\npath = \"keeper.sqlite\"\n")
        before, _ = asyncio.run(scan_once(cfg_path, "before the crash"))
        console.print(f"before: {counts(before)}")
        console.print(Rule("keeper run (its log lines below), then a price crash"))
        keeper_proc = subprocess.Popen([sys.executable, "-m", "keeper", "run", "--config", str(cfg_path)])
        time.sleep(3)
        asyncio.run(crash(proc.rpc_url, info, args.pause))
        time.sleep(2)
        keeper_proc.send_signal(signal.SIGTERM)
        keeper_proc.wait(timeout=20)
        console.print(f"keeper run exited with code {keeper_proc.returncode} after SIGTERM")
        keeper_proc = None
        console.print(Rule("after the crash"))
        after, _ = asyncio.run(scan_once(cfg_path, "after the crash"))
        console.print(f"before: {counts(before)}\nafter:  {counts(after)}")
        was = {p.account: p.status for p in before}
        moves: dict[tuple[str, str], int] = {}
        for p in after:
            if p.status != was.get(p.account, Status.SAFE):
                key = (was.get(p.account, Status.SAFE).value, p.status.value)
                moves[key] = moves.get(key, 0) + 1
        for (a, b), n in sorted(moves.items()):
            console.print(f"[bold]{n:3d} positions went from {a} to {b}[/]")
    finally:
        if keeper_proc is not None:
            keeper_proc.kill()
        stop_anvil(proc.pid)
        console.print(f"stopped anvil (pid {proc.pid})")


if __name__ == "__main__":
    main()
