"""`make demo`: the whole loop on a local chain with Aave V3, Morpho Blue and a Compound V3 stand-in.

anvil + the three protocols (keeper.devnet) -> discovery and a first scan -> ``keeper run``
in live mode as its own process, its JSON log going to ``<dir>/keeper.log``, with a webhook on
loopback, one of the borrowers marked as the user's own (protected), and the liquidator
enabled -> a price crash in steps with real feed transactions -> alerts arrive at the
webhook, the protected loan is topped up before it can be liquidated, other positions are
liquidated for profit -> a summary table. What the terminal shows (progress, prices,
positions at risk, alerts, actions with tx hashes) is told by keeper.demo_story.

The keeper signs with anvil's public dev account #1 (a well-known test key, never a real
one), handed to the child process in KEEPER_PRIVATE_KEY as a real user would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
DEV_KEY_1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil's #1
CRASH = [("WETH", "-6%"), ("WBTC", "-8%"), ("WETH", "-6%"), ("WETH", "-6%"), ("WBTC", "-10%"),
         ("WETH", "-6%"), ("WETH", "-6%"), ("WBTC", "-10%"), ("WETH", "-6%")]


@contextlib.asynccontextmanager
async def web3_at(rpc_url: str):
    """A devnet web3 whose HTTP session is closed on the way out (no "Unclosed client session")."""
    from keeper.devnet.api import connect

    w3 = connect(rpc_url)
    try:
        yield w3
    finally:
        await w3.provider.disconnect()


async def scan_once(cfg_path: Path) -> list:
    """Discovery (events) and one full scan of every market, as `keeper scan` does."""
    from keeper.chain.rpc import Rpc
    from keeper.config import load_config
    from keeper.engine import Engine
    from keeper.store import Store

    cfg = load_config(cfg_path, env={})
    rpc = Rpc.from_config(cfg.chain)
    store = Store(cfg.store.path.with_name("demo-scan.sqlite"))
    try:
        engine = Engine(cfg, rpc, store, drops="all")
        block = await rpc.block_number()
        await engine.index(block)
        return await engine.full_scan(block)
    finally:
        store.close()
        await rpc.close()


async def fund(rpc_url: str, info, to: str) -> None:
    from keeper.devnet.api import mint

    async with web3_at(rpc_url) as w3:
        for symbol, amount in (("USDC", 50 * 10**6 * 10**6), ("DAI", 5 * 10**6 * 10**18),
                               ("WETH", 2_000 * 10**18), ("WBTC", 100 * 10**8)):
            await mint(w3, info, symbol, to, amount)


async def prices(rpc_url: str, info) -> dict[str, int]:
    from keeper.devnet.api import get_price

    async with web3_at(rpc_url) as w3:
        return {s: await get_price(w3, info, s) for s in info.tokens}


async def crash(rpc_url: str, info, minfo, pause_s: float, scene) -> None:
    from keeper.demo_deleverage import follow
    from keeper.demo_story import usd
    from keeper.devnet.api import apply_price_change, get_price, set_price
    from keeper.devnet.morpho import follow_feed

    async with web3_at(rpc_url) as w3:
        for symbol, step in CRASH:
            old = await get_price(w3, info, symbol)
            change = await set_price(w3, info, symbol, apply_price_change(old, step))
            await follow(w3, info, scene, symbol)  # the DEX first (the deleverage scene's pools),
            await follow_feed(w3, minfo, symbol, change.old_e8, change.new_e8)  # then Morpho's oracles
            console.print(f"[bold magenta]price  {symbol} {step}: {usd(change.old_e8)} -> "
                          f"{usd(change.new_e8)} (block {change.block}, tx {change.tx_hash[:18]}…)[/]")
            await asyncio.sleep(pause_s)


def write_config(path: Path, info, minfo, cinfo, hook_url: str, protected: str, extra: str = "") -> None:
    from keeper.devnet.lifecycle import comet_config_toml, morpho_config_toml
    from keeper.devnet.state import keeper_config_toml

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
""" + extra)


def main() -> None:
    ap = argparse.ArgumentParser(description="keeper demo on a local anvil")
    ap.add_argument("--borrowers", type=int, default=40)
    ap.add_argument("--dir", type=Path, default=Path(".devnet/demo"))
    ap.add_argument("--pause", type=float, default=1.5, help="seconds between price steps")
    ap.add_argument("--aave", default="3.6", choices=("3.6", "3.0.2"), help="Aave V3 version to deploy")
    args = ap.parse_args()
    console.print(Rule("keeper demo: Aave V3, Morpho Blue and a Compound V3 stand-in on a local anvil"))
    args.dir.mkdir(parents=True, exist_ok=True)
    for old in args.dir.glob("*.sqlite*"):
        old.unlink()
    run_demo(args)


def run_demo(args: argparse.Namespace) -> None:
    from keeper import demo_deleverage as deleverage
    from keeper import demo_story as story
    from keeper.devnet.anvil import start_anvil, stop_anvil
    from keeper.devnet.api import deploy
    from keeper.devnet.comet import deploy_comet
    from keeper.devnet.morpho import compile_morpho, deploy_morpho
    from keeper.demo_hook import start_webhook
    from keeper.log import configure_logging
    from keeper.progress import Steps
    from keeper.units import format_hf

    configure_logging(level="error")  # this process narrates; keeper run logs to its own file
    steps = Steps(console)
    keeper_log = args.dir / "keeper.log"
    alerts: list[dict] = []
    decimals: dict[str, int] = {}  # the devnet's tokens, once deployed

    def on_alert(a: dict) -> None:
        alerts.append(a)
        console.print(story.alert_line(a, decimals), highlight=False, soft_wrap=True)

    with steps.step("start anvil on a free port"):
        proc = start_anvil(port=0, log_path=str(args.dir / "anvil.log"))
    server, hook_url = start_webhook(on_alert)
    keeper_proc = watcher = None
    try:
        n = args.borrowers
        source = "compiled from npm @aave-dao/aave-v3-origin" if args.aave == "3.6" else "npm @aave/core-v3"
        with steps.step(f"Aave V3 {args.aave}: deploy ({source}), seed {n} borrowers"):
            info = asyncio.run(deploy(proc.rpc_url, n_borrowers=n, seed=1, aave=args.aave))
        decimals.update(info.decimals)
        with steps.step("Morpho Blue 1.0.0: compile with npm solc 0.8.19 (cached in build/)"):
            compile_morpho()
        with steps.step(f"Morpho Blue: deploy WETH/USDC and WBTC/USDC, seed {n // 2} borrowers"):
            minfo = asyncio.run(_with_w3(proc.rpc_url, deploy_morpho, info, n // 2, 1))
        with steps.step(f"Compound V3 stand-in (CometStandIn): deploy, seed {n // 2} borrowers"):
            cinfo = asyncio.run(_with_w3(proc.rpc_url, deploy_comet, info, n // 2, 1))
        with steps.step(f"fund the keeper wallet {story.short(info.liquidator)} with USDC, DAI, WETH, WBTC"):
            asyncio.run(fund(proc.rpc_url, info, info.liquidator))
        cfg_path = args.dir / "keeper.toml"
        write_config(cfg_path, info, minfo, cinfo, hook_url, info.borrowers[0])
        with steps.step("deleverage scene: Uniswap V3 pools, KeeperProtection, twin borrowers, a delegation"):
            scene = asyncio.run(_with_w3(proc.rpc_url, deleverage.set_up, info, minfo, DEV_KEY_1))
        with steps.step("discover borrowers from the protocols' events and scan every position"):
            before = asyncio.run(scan_once(cfg_path))
        weth_first = [p for p in before if p.main_collateral == "WETH" and p.health_factor_wad
                      and p.account not in (scene.saved, scene.neighbour)]
        protected = min(weth_first, key=lambda p: p.health_factor_wad)  # on whichever protocol
        write_config(cfg_path, info, minfo, cinfo, hook_url, protected.account,
                     scene.protect_toml())
        console.print(story.prices_line(asyncio.run(prices(proc.rpc_url, info))))
        console.print(story.status_table(before, f"{len(before)} positions before the crash"))
        console.print(story.riskiest_table(before))
        console.print(f"protected (the user's own loan, on {story.protocol_name(protected.protocol)}): "
                      f"{protected.account}, HF "
                      f"{format_hf(protected.health_factor_wad)}; keeper tops it up below 1.15 "
                      f"to 1.40.\n" + deleverage.intro(scene, before) + "\n"
                      + f"keeper wallet {info.liquidator} (anvil dev account #1); webhook {hook_url}")
        console.print(Rule(f"keeper run (live) in the background, its JSON log in {keeper_log}; "
                           "then a price crash"))
        watcher = story.ActionWatcher(args.dir / "keeper.sqlite", console).start()
        env = {**os.environ, "KEEPER_PRIVATE_KEY": DEV_KEY_1}
        with keeper_log.open("w") as logf:
            keeper_proc = subprocess.Popen(
                [sys.executable, "-m", "keeper", "run", "--config", str(cfg_path),
                 "--log-format", "json"], env=env, stdout=logf, stderr=subprocess.STDOUT)
        _wait_for(keeper_log, '"scan.done"', 60)  # its first full scan: then the crash
        asyncio.run(crash(proc.rpc_url, info, minfo, args.pause, scene))
        time.sleep(6)
        keeper_proc.send_signal(signal.SIGTERM)
        code = keeper_proc.wait(timeout=60)
        keeper_proc = None
        watcher.stop()
        console.print(f"keeper run stopped on SIGTERM (exit code {code})"
                      + ("" if code == 0 else f": see {keeper_log}"))
        with steps.step("scan every position again"):
            after = asyncio.run(scan_once(cfg_path))
        prot = next(p for p in after if (p.market, p.account) == (protected.market, protected.account))
        console.print(story.status_table(after, "after the crash"))
        console.print(f"protected account {story.short(protected.account)}: HF "
                      f"{format_hf(protected.health_factor_wad)} before, "
                      f"{format_hf(prot.health_factor_wad)} now ({prot.status.value})")
        for line in deleverage.outcome(scene, before, after, watcher.rows):
            console.print(line, highlight=False, soft_wrap=True)
        table = story.summary_table(before, after, watcher.rows, alerts)
    finally:
        if keeper_proc is not None:
            keeper_proc.kill()
        if watcher is not None:
            watcher.stop()
        server.shutdown()
        stop_anvil(proc.pid)
    lines = sum(1 for _ in keeper_log.open()) if keeper_log.exists() else 0
    console.print(f"stopped anvil (pid {proc.pid}) and the webhook. keeper's log: {keeper_log} "
                  f"({lines} JSON lines); anvil's: {args.dir / 'anvil.log'}")
    console.print(table)


def _wait_for(log: Path, needle: str, timeout_s: float) -> None:
    """Until ``needle`` is in ``log`` (keeper's JSON log), at most ``timeout_s``."""
    end = time.time() + timeout_s
    while time.time() < end and needle not in log.read_text():
        time.sleep(0.2)


async def _with_w3(rpc_url: str, fn, *args):
    async with web3_at(rpc_url) as w3:
        return await fn(w3, *args)


if __name__ == "__main__":
    main()
