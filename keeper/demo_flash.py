"""`make demo`, part two: ``keeper run`` liquidates capital-free from a wallet holding only ETH.

A fresh anvil with the devnet (Aave V3, Morpho Blue, the Comet stand-in, Uniswap V3 pools at
the feeds' prices), an operator key with 10 ETH and nothing else deploys keeper's
KeeperLiquidator, WETH and WBTC fall 30 % (the pools arbitraged back). Then ``keeper run``
(live, its own process, ``[liquidator] contract`` and ``[dex]`` configured) decides for each
liquidatable position between own capital (none here) and the contract, simulates and sends.
The demo prints each liquidation from keeper's ``actions`` table: its route (flash source and
swap path), expected and realized profit, the gas; and checks the operator's balance of each
profit token against the realized profits the contract's ``Liquidated`` events reported.

    python -m keeper.demo_flash
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from keeper.chain.rpc import Rpc
from keeper.config_types import Secret
from keeper.demo_story import protocol_name, read_actions, short, usd
from keeper.devnet.accounts import derived_key
from keeper.devnet.anvil import start_anvil, stop_anvil
from keeper.devnet.api import connect, deploy
from keeper.devnet.comet import deploy_comet
from keeper.devnet.flash import crash
from keeper.devnet.lifecycle import comet_config_toml, morpho_config_toml
from keeper.devnet.morpho import deploy_morpho
from keeper.devnet.state import keeper_config_toml
from keeper.devnet.uniswap import deploy_uniswap
from keeper.executors.signer import Signer
from keeper.liquidator_deploy import deploy_liquidator
from keeper.units import format_fixed

console = Console(highlight=False)
BALANCE_OF = bytes.fromhex("70a08231")
PROTOCOLS = ("aave_v3", "morpho_blue", "compound_v3")
RUN_FOR_S = 120  # at most; the demo stops keeper once a tick has nothing left to do


async def _balance(rpc: Rpc, token: str, who: str) -> int:
    return int.from_bytes(await rpc.call(token, BALANCE_OF + bytes(12) + bytes.fromhex(who[2:])), "big")


def _config(path: Path, info, minfo, cinfo, uinfo, contract: str) -> None:
    path.write_text('mode = "live"\n' + keeper_config_toml(info) + morpho_config_toml(minfo)
                    + comet_config_toml(cinfo) + f"""
[monitor]
scan_interval_s = 2
index_interval_s = 30

[store]
path = "{path.parent / 'keeper.sqlite'}"

[dex]
uniswap_v3_factory = "{uinfo.factory}"
uniswap_v3_router = "{uinfo.router}"
uniswap_v3_quoter = "{uinfo.quoter}"

[liquidator]
enabled = true
min_profit_base = 0
contract = "{contract}"
""")


def _settled(rows: list[dict], since: float) -> bool:
    """Every protocol liquidated, and nothing new for a few seconds."""
    done = {r["protocol"] for r in rows if r["result"] == "done"}
    return done >= set(PROTOCOLS) and all(r["created_at"] < since for r in rows)


async def _world(rpc_url: str, tmp: Path, key: str) -> tuple:
    node = Rpc(rpc_url, timeout_s=60.0)
    w3 = connect(rpc_url)
    try:
        info = await deploy(rpc_url, n_borrowers=30, seed=1)
        minfo, cinfo = await deploy_morpho(w3, info, 12, 3), await deploy_comet(w3, info, 12, 3)
        uinfo = await deploy_uniswap(w3, info)
        operator = Signer(Secret(key)).address
        await node.request("anvil_setBalance", [operator, hex(10 * 10**18)])
        contract = await deploy_liquidator(node, Signer(Secret(key)), uinfo.router)
        console.print(f"operator {operator}: 10 ETH and no tokens; KeeperLiquidator {contract}; "
                      f"{len(uinfo.pools)} Uniswap V3 pools")
        await crash(w3, info, minfo, uinfo, "-30%", ("WETH", "WBTC"))
        console.print("WETH and WBTC -30% (feeds, Morpho oracles); pools arbitraged back to the oracle")
        _config(tmp / "keeper.toml", info, minfo, cinfo, uinfo, contract)
        return info, operator, contract
    finally:
        await w3.provider.disconnect()
        await node.close()


async def _report(rpc_url: str, info, operator: str, contract: str, rows: list[dict]) -> None:
    node = Rpc(rpc_url, timeout_s=60.0)
    symbols = {v.lower(): k for k, v in info.tokens.items()}
    grew: dict[str, int] = {}
    try:
        for r in (r for r in rows if r["kind"] == "liquidate"):
            if r["result"] != "done":
                console.print(f"[dim]{protocol_name(r['protocol'])} {short(r['account'])}: {r['result']} "
                              f"(simulation reverted: planned on pools an earlier liquidation moved; "
                              f"planned again next tick)[/]")
                continue
            token = re.search(r"profit in (0x[0-9a-fA-F]{40})", r["detail"]).group(1)
            realized = int(re.search(r"realized (\d+)$", r["detail"]).group(1))
            grew[token] = grew.get(token, 0) + realized
            receipt = await node.request("eth_getTransactionReceipt", [r["tx_hash"]])
            sym = symbols[token.lower()]
            console.print(f"[bold]{protocol_name(r['protocol'])}[/] {short(r['account'])}: {r['route']}\n"
                          f"   profit {format_fixed(realized, info.decimals[sym])} {sym}; expected "
                          f"{usd(int(r['expected']))}, realized {usd(int(r['realized']))} after gas "
                          f"{int(receipt['gasUsed'], 16):,}; tx {r['tx_hash']}")
        for token, total in grew.items():
            have = await _balance(node, token, operator)
            sym = symbols[token.lower()]
            console.print(f"operator's {sym}: {format_fixed(have, info.decimals[sym])} = the sum of the realized "
                          f"profits in {sym}: {'yes' if have == total else 'NO'}")
        left = [s for s, t in info.tokens.items() if await _balance(node, t, contract)]
        console.print(f"KeeperLiquidator holds {'nothing' if not left else ', '.join(left)}")
    finally:
        await node.close()


def run() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="keeper-demo-flash-"))
    proc = start_anvil(port=0, log_path=tmp / "anvil.log")
    keeper_proc = None
    key = derived_key("flash-operator", 1, 0)  # a throwaway devnet key
    try:
        info, operator, contract = asyncio.run(_world(proc.rpc_url, tmp, key))
        log = tmp / "keeper.log"
        console.print(f"keeper run (live) with \\[liquidator] contract and \\[dex], its JSON log in {log}")
        with log.open("w") as logf:
            keeper_proc = subprocess.Popen(
                [sys.executable, "-m", "keeper", "run", "--config", str(tmp / "keeper.toml"),
                 "--log-format", "json"], env={**os.environ, "KEEPER_PRIVATE_KEY": key},
                stdout=logf, stderr=subprocess.STDOUT)
        start, rows = time.time(), []
        while time.time() - start < RUN_FOR_S and not _settled(rows, time.time() - 6):
            time.sleep(1)
            asyncio.run(_mine(proc.rpc_url))  # blocks keep coming, as on a live chain
            rows = read_actions(tmp / "keeper.sqlite")
        keeper_proc.send_signal(signal.SIGTERM)
        keeper_proc.wait(timeout=60)
        keeper_proc = None
        asyncio.run(_report(proc.rpc_url, info, operator, contract, read_actions(tmp / "keeper.sqlite")))
    finally:
        if keeper_proc is not None:
            keeper_proc.kill()
        stop_anvil(proc.pid)


async def _mine(rpc_url: str) -> None:
    node = Rpc(rpc_url, timeout_s=30.0)
    try:
        await node.request("evm_mine", [])
    finally:
        await node.close()


def main() -> None:
    run()


if __name__ == "__main__":
    main()
