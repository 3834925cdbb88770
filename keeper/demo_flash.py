"""`make demo`, part two: capital-free liquidations from a wallet that holds only ETH.

A fresh anvil with the devnet (Aave V3, Morpho Blue, the Comet stand-in, Uniswap V3 pools at
the feeds' prices), an operator key with 10 ETH and nothing else deploys keeper's
KeeperLiquidator, WETH and WBTC fall 30 % (the pools arbitraged back), then for each
protocol keeper plans one liquidation with its exact math (protocol amounts, flash fee,
Uniswap V3 swap), simulates it and sends it signed through its TxManager; the demo prints
the route, the flash source, the expected and the realized profit (from the contract's
``Liquidated`` event and the operator's balance) and the gas.

    python -m keeper.demo_flash
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from rich.console import Console

from keeper.chain.rpc import Rpc
from keeper.config import load_config
from keeper.config_types import Secret
from keeper.devnet.accounts import derived_key
from keeper.devnet.anvil import start_anvil, stop_anvil
from keeper.devnet.api import connect, deploy
from keeper.devnet.comet import deploy_comet
from keeper.devnet.flash import crash, next_aave, next_comet, next_morpho
from keeper.devnet.morpho import deploy_morpho
from keeper.devnet.state import write_keeper_config
from keeper.devnet.uniswap import deploy_uniswap
from keeper.dex.liquidator import liquidator_allow_list, realized_profit
from keeper.engine import Engine
from keeper.executors import TxRequest
from keeper.executors.signer import Signer
from keeper.executors.tx import build_tx_manager
from keeper.liquidator_deploy import deploy_liquidator
from keeper.store import Store
from keeper.units import format_fixed

console = Console(highlight=False)
BALANCE_OF = bytes.fromhex("70a08231")


async def _balance(rpc: Rpc, token: str, who: str) -> int:
    return int.from_bytes(await rpc.call(token, BALANCE_OF + bytes(12) + bytes.fromhex(who[2:])), "big")


async def run() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="keeper-demo-flash-"))
    proc = start_anvil(port=0, log_path=tmp / "anvil.log")
    node = Rpc(proc.rpc_url, timeout_s=60.0)
    store = Store(tmp / "k.sqlite")
    w3 = connect(proc.rpc_url)
    try:
        info = await deploy(proc.rpc_url, n_borrowers=30, seed=1)
        minfo, cinfo = await deploy_morpho(w3, info, 12, 3), await deploy_comet(w3, info, 12, 3)
        uinfo = await deploy_uniswap(w3, info)
        key = derived_key("flash-operator", 1, 0)  # a throwaway devnet key
        operator = Signer(Secret(key)).address
        await node.request("anvil_setBalance", [operator, hex(10 * 10**18)])
        contract = await deploy_liquidator(node, Signer(Secret(key)), uinfo.router)
        console.print(f"operator {operator}: 10 ETH and no tokens; KeeperLiquidator {contract}; "
                      f"{len(uinfo.pools)} Uniswap V3 pools")
        await crash(w3, info, minfo, uinfo, "-30%", ("WETH", "WBTC"))
        console.print("WETH and WBTC -30% (feeds, Morpho oracles); pools arbitraged back to the oracle")
        cfg = load_config(write_keeper_config(info, tmp / "keeper.toml"))
        engine = Engine(cfg, node, store)
        tx = build_tx_manager(cfg.executor, mode="live", private_key=Secret(key), rpc=node, store=store,
                              allow=liquidator_allow_list(contract))
        symbols = {v.lower(): k for k, v in info.tokens.items()}
        finders = (lambda: next_aave(node, engine, info, minfo, uinfo),
                   lambda: next_morpho(node, info, minfo, uinfo),
                   lambda: next_comet(node, info, minfo, cinfo, uinfo))
        for find in finders:
            t, liq = await find()
            if liq is None:
                console.print("no paying capital-free liquidation found")
                continue
            token = symbols[liq.profit_token.lower()]
            before = await _balance(node, liq.profit_token, operator)
            await node.request("evm_setNextBlockTimestamp", [t])
            out = await tx.send(TxRequest(to=contract, data=liq.calldata, purpose=f"capital-free {liq.protocol}",
                                          action_key=f"demo:{liq.protocol}", max_cost_wei=10**17))
            realized = realized_profit(out.logs, contract)
            grew = await _balance(node, liq.profit_token, operator) - before
            dec = info.decimals[token]
            console.print(
                f"[bold]{liq.protocol}[/] {liq.account}: {liq.plan.describe(symbols)}\n"
                f"   expected {format_fixed(liq.expected_profit, dec)} {token}, realized "
                f"{format_fixed(realized or 0, dec)} {token} (operator +{format_fixed(grew, dec)}), "
                f"gas {out.gas_used:,}, tx {out.hash}")
    finally:
        await w3.provider.disconnect()
        store.close()
        await node.close()
        stop_anvil(proc.pid)


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
