"""`make demo`: the whole loop on a local chain with a real Aave V3 market.

anvil + Aave V3 (keeper.devnet) -> a first scan -> ``keeper run`` in live mode as its own
process (its log lines stream here) with a webhook on loopback, one of the borrowers marked
as the user's own (protected), and the liquidator enabled -> a price crash in steps with
real feed transactions -> alerts arrive at the webhook, the protected loan is topped up
before it can be liquidated, other positions are liquidated for profit -> summary.

The keeper signs with anvil's public dev account #1 (a well-known test key, never a real
one), handed to the child process in KEEPER_PRIVATE_KEY as a real user would.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from keeper.config import load_config
from keeper.devnet.anvil import start_anvil, stop_anvil
from keeper.devnet.api import apply_price_change, connect, deploy, get_price, mint, set_price
from keeper.devnet.comet import deploy_comet
from keeper.devnet.lifecycle import comet_config_toml, morpho_config_toml
from keeper.devnet.morpho import deploy_morpho, follow_feed
from keeper.devnet.state import keeper_config_toml
from keeper.demo_hook import start_webhook
from keeper.log import configure_logging
from keeper.model import Status
from keeper.units import format_fixed

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
DEV_KEY_1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil's #1
CRASH = [("WETH", "-6%"), ("WBTC", "-8%"), ("WETH", "-6%"), ("WETH", "-6%"), ("WBTC", "-10%"),
         ("WETH", "-6%"), ("WETH", "-6%"), ("WBTC", "-10%"), ("WETH", "-6%")]


async def scan_once(cfg_path: Path, title: str) -> list:
    from keeper.chain.rpc import Rpc
    from keeper.cli import print_table
    from keeper.engine import Engine
    from keeper.store import Store

    cfg = load_config(cfg_path, env={})
    rpc = Rpc.from_config(cfg.chain)
    store = Store(cfg.store.path.with_name("demo-scan.sqlite"))
    try:
        engine = Engine(cfg, rpc, store, drops="all")
        block = await rpc.block_number()
        await engine.index(block)
        positions = await engine.full_scan(block)
        print_table(positions, block, title, console)
        return positions
    finally:
        store.close()
        await rpc.close()


def counts(positions) -> str:
    out = []
    for proto in sorted({p.protocol for p in positions}):
        c = {s: 0 for s in Status}
        for p in positions:
            if p.protocol == proto:
                c[p.status] += 1
        out.append(f"{proto}: " + ", ".join(f"{s.value} {n}" for s, n in c.items()))
    return "; ".join(out)


async def fund(rpc_url: str, info, to: str) -> None:
    w3 = connect(rpc_url)
    for symbol, amount in (("USDC", 50 * 10**6 * 10**6), ("DAI", 5 * 10**6 * 10**18),
                           ("WETH", 2_000 * 10**18), ("WBTC", 100 * 10**8)):
        await mint(w3, info, symbol, to, amount)


async def crash(rpc_url: str, info, minfo, pause_s: float) -> None:
    w3 = connect(rpc_url)
    for symbol, step in CRASH:
        old = await get_price(w3, info, symbol)
        change = await set_price(w3, info, symbol, apply_price_change(old, step))
        await follow_feed(w3, minfo, symbol, change.old_e8, change.new_e8)  # Morpho's oracles too
        console.print(f"[bold magenta]>>> {symbol} {step}: {format_fixed(change.old_e8, 8, 2)} -> "
                      f"{format_fixed(change.new_e8, 8, 2)} USD (block {change.block})[/]")
        await asyncio.sleep(pause_s)


def write_config(path: Path, info, minfo, cinfo, hook_url: str, protected: str) -> None:
    path.write_text('mode = "live"\n' + keeper_config_toml(info) + morpho_config_toml(minfo)
                    + comet_config_toml(cinfo) + f"""
[monitor]
scan_interval_s = 5
index_interval_s = 30

[store]
path = "keeper.sqlite"

[liquidator]
enabled = true
min_profit_base = 0

[[protect]]
account = "{protected}"
trigger_hf = "1.15"
target_hf = "1.40"
actions = ["repay:USDC", "repay:DAI", "supply:WETH"]

[[notify]]
kind = "webhook"
url = "{hook_url}"
statuses = ["at_risk", "liquidatable"]
""")


def summary(db: Path, alerts: list[dict], protected: str) -> None:
    con = sqlite3.connect(db)
    rows = con.execute("SELECT kind, account, result, expected, realized, detail, tx_hash "
                       "FROM actions ORDER BY created_at").fetchall()
    con.close()
    liq = [r for r in rows if r[0] == "liquidate" and r[2] == "done"]
    tops = [r for r in rows if r[0] == "top_up" and r[2] == "done"]
    con = sqlite3.connect(db)
    keys = [k for (k,) in con.execute("SELECT action_key FROM actions WHERE result = 'done'")]
    con.close()
    by = {"Aave V3": sum(k.startswith("liq:") for k in keys),
          "Morpho Blue": sum(k.startswith("mliq:") for k in keys),
          "Compound V3 (absorb + buy)": sum(k.startswith("absorb:") for k in keys)}
    console.print(Rule("what the keeper did"))
    for kind, account, result, expected, realized, detail, tx in rows:
        console.print(f"{kind:9} {account} {result:8} {detail or ''} tx {tx or '-'}")
    total = 0
    for r in liq:
        for part in (r[5] or "").split():
            if part.startswith("realized_profit_base="):
                total += int(part.split("=")[1])
    console.print("[bold]liquidations by protocol: " + ", ".join(f"{k} {v}" for k, v in by.items()) + "[/]")
    console.print(f"[bold]Aave V3 realized profit {format_fixed(total, 8, 2)} USD "
                  f"after gas; {len(tops)} top-ups of the protected account {protected}; "
                  f"{len(alerts)} alerts received by the webhook[/]")


def main() -> None:
    ap = argparse.ArgumentParser(description="keeper demo on a local anvil")
    ap.add_argument("--borrowers", type=int, default=40)
    ap.add_argument("--dir", type=Path, default=Path(".devnet/demo"))
    ap.add_argument("--pause", type=float, default=1.5, help="seconds between price steps")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    for old in args.dir.glob("*.sqlite*"):
        old.unlink()
    configure_logging(level="error")  # this process prints tables; `keeper run` prints the log
    console.print(Rule("keeper demo: a real Aave V3 market on a local anvil"))
    proc = start_anvil(port=0, log_path=str(args.dir / "anvil.log"))
    keeper_proc = None
    alerts: list[dict] = []

    def on_alert(a: dict) -> None:
        alerts.append(a)
        console.print(f"[bold cyan]webhook <<< {a.get('kind')}: {a.get('text', '').splitlines()[0]}[/]")

    server, hook_url = start_webhook(on_alert)
    try:
        t0 = time.perf_counter()
        info = asyncio.run(deploy(proc.rpc_url, n_borrowers=args.borrowers, seed=1))
        minfo = asyncio.run(deploy_morpho(connect(proc.rpc_url), info, args.borrowers // 2, 1))
        cinfo = asyncio.run(deploy_comet(connect(proc.rpc_url), info, args.borrowers // 2, 1))
        console.print(f"anvil pid {proc.pid} at {proc.rpc_url}; Aave V3 with {len(info.borrowers)} "
                      f"borrowers, Morpho Blue ({', '.join(minfo.labels.values())}) with "
                      f"{len(minfo.borrowers)} and Compound V3 (CometStandIn, a stand-in for tests) "
                      f"with {len(cinfo.borrowers)} in {time.perf_counter() - t0:.1f} s")
        asyncio.run(fund(proc.rpc_url, info, info.liquidator))
        cfg_path = args.dir / "keeper.toml"
        write_config(cfg_path, info, minfo, cinfo, hook_url, info.borrowers[0])
        before = asyncio.run(scan_once(cfg_path, "before the crash"))
        weth_first = [p for p in before if p.protocol == "aave_v3" and p.main_collateral == "WETH"
                      and p.health_factor_wad]
        protected = min(weth_first, key=lambda p: p.health_factor_wad).account
        write_config(cfg_path, info, minfo, cinfo, hook_url, protected)
        console.print(f"protected (the user's own): {protected}; keeper wallet {info.liquidator}; "
                      f"webhook {hook_url}")
        console.print(Rule("keeper run (live), then a price crash"))
        env = {**os.environ, "KEEPER_PRIVATE_KEY": DEV_KEY_1}
        keeper_proc = subprocess.Popen([sys.executable, "-m", "keeper", "run", "--config", str(cfg_path)],
                                       env=env)
        time.sleep(4)
        asyncio.run(crash(proc.rpc_url, info, minfo, args.pause))
        time.sleep(6)
        keeper_proc.send_signal(signal.SIGTERM)
        keeper_proc.wait(timeout=60)
        console.print(f"keeper run exited with code {keeper_proc.returncode} after SIGTERM")
        keeper_proc = None
        after = asyncio.run(scan_once(cfg_path, "after the crash"))
        console.print(f"before: {counts(before)}\nafter:  {counts(after)}")
        prot = next(p for p in after if p.account == protected and p.protocol == "aave_v3")
        console.print(f"protected account health factor now {format_fixed(prot.health_factor_wad or 0, 18, 4)}"
                      f" ({prot.status.value})")
        summary(args.dir / "keeper.sqlite", alerts, protected)
    finally:
        if keeper_proc is not None:
            keeper_proc.kill()
        server.shutdown()
        stop_anvil(proc.pid)
        console.print(f"stopped anvil (pid {proc.pid}) and the webhook")


if __name__ == "__main__":
    main()
