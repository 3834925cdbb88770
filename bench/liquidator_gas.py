"""Gas of a capital-free liquidation (keeper's KeeperLiquidator: flash + liquidate + swap +
repay + sweep) beside the same liquidation with the liquidator's own capital, per protocol.

    .venv/bin/python bench/liquidator_gas.py

A fresh anvil with the devnet (Aave V3, Morpho Blue, the Comet stand-in, Uniswap V3), WETH
and WBTC down 30 % and the pools arbitraged back. For each protocol the first paying
capital-free liquidation is planned (keeper's exact math + the pure swap math), mined, and
its gas read from the receipt; then the chain is reverted and the same protocol call is
sent with own capital from a wallet that holds the debt token (its mint and approval not
counted):

* aave_v3: ``Pool.liquidationCall`` (the same collateral, debt, user and debtToCover);
  the capital-free run once per flash source (Morpho free, Aave 5 bps, Uniswap pool) and
  once through a two-hop route (``exactInput``);
* morpho_blue: ``Morpho.liquidate`` (same amounts, no callback);
* compound_v3: ``absorb`` + ``buyCollateral`` (two transactions, summed).

Prints a markdown table. A benchmark, not a test: nothing here asserts.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from keeper.chain.rpc import Rpc
from keeper.config import load_config
from keeper.config_types import Secret
from keeper.devnet.accounts import derived_key
from keeper.devnet.anvil import start_anvil, stop_anvil
from keeper.devnet.api import connect, deploy, mint
from keeper.devnet.artifacts import load_aave, load_own
from keeper.devnet.comet import deploy_comet
from keeper.devnet.flash import (
    crash,
    devnet_flash_sources,
    devnet_routes,
    next_aave,
    next_comet,
    next_morpho,
    read_pools,
)
from keeper.devnet.morpho import deploy_morpho, load_morpho
from keeper.devnet.rpc import calldata, rpc, wait_receipt
from keeper.devnet.state import write_keeper_config
from keeper.devnet.uniswap import deploy_uniswap
from keeper.dex import flash_plans
from keeper.dex.liquidator import FLASH_AAVE, FLASH_MORPHO, FLASH_UNISWAP
from keeper.engine import Engine
from keeper.executors.signer import Signer
from keeper.liquidator_deploy import deploy_liquidator
from keeper.store import Store

SOURCE = {FLASH_MORPHO: "Morpho flashLoan", FLASH_AAVE: "Aave flashLoanSimple", FLASH_UNISWAP: "Uniswap flash",
          0: "none (Morpho callback)"}
GAS = hex(3_000_000)
MAX_UINT = 2**256 - 1


async def send(w3, sender: str, to: str, data: str, t: int | None = None) -> int:
    if t is not None:
        await rpc(w3, "evm_setNextBlockTimestamp", [t])
    receipt = await wait_receipt(w3, await rpc(w3, "eth_sendTransaction",
                                               [{"from": sender, "to": to, "data": data, "gas": GAS}]))
    if int(receipt["status"], 16) != 1:
        raise SystemExit(f"reverted: {receipt['transactionHash']}")
    return int(receipt["gasUsed"], 16)


async def own_capital(w3, info, liq, t: int) -> int:
    """The same protocol call with the liquidator's own tokens (mint + approve not counted)."""
    me, erc20, c = info.liquidator, load_aave("MintableERC20").abi, liq.call
    if liq.protocol == "aave_v3":
        await mint(w3, info, info.symbol_of(c.debt), me, c.debt_to_cover)
        await send(w3, me, c.debt, calldata(erc20, "approve", [c.pool, MAX_UINT]))
        return await send(w3, me, c.pool, calldata(load_aave("Pool").abi, "liquidationCall",
                                                   [c.collateral, c.debt, c.user, c.debt_to_cover, False]), t)
    if liq.protocol == "morpho_blue":
        loan = c.market[0]
        await mint(w3, info, info.symbol_of(loan), me, liq.plan.repay)
        await send(w3, me, loan, calldata(erc20, "approve", [c.morpho, MAX_UINT]))
        return await send(w3, me, c.morpho, calldata(load_morpho("Morpho").abi, "liquidate",
                                                     [c.market, c.borrower, c.seized_assets, c.repaid_shares, b""]), t)
    base = liq.profit_token
    await mint(w3, info, info.symbol_of(base), me, c.base_amount)
    await send(w3, me, base, calldata(erc20, "approve", [c.comet, MAX_UINT]))
    comet = load_own("IComet").abi
    gas = await send(w3, me, c.comet, calldata(comet, "absorb", [me, list(c.accounts)]), t)
    return gas + await send(w3, me, c.comet, calldata(comet, "buyCollateral",
                                                      [c.asset, c.min_amount, c.base_amount, me]))


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="keeper-bench-"))
    proc = start_anvil(port=0, log_path=tmp / "anvil.log")
    node = Rpc(proc.rpc_url, timeout_s=60.0)
    store = Store(tmp / "k.sqlite")
    try:
        info = await deploy(proc.rpc_url, n_borrowers=30, seed=1)
        w3 = connect(proc.rpc_url)
        minfo, cinfo = await deploy_morpho(w3, info, 12, 3), await deploy_comet(w3, info, 12, 3)
        uinfo = await deploy_uniswap(w3, info)
        key = derived_key("flash-operator", 1, 0)
        operator = Signer(Secret(key)).address
        await rpc(w3, "anvil_setBalance", [operator, hex(10**19)])
        contract = await deploy_liquidator(node, Signer(Secret(key)), uinfo.router)
        await crash(w3, info, minfo, uinfo, "-30%", ("WETH", "WBTC"))
        await rpc(w3, "anvil_impersonateAccount", [operator])
        cfg = load_config(write_keeper_config(info, tmp / "keeper.toml"))
        engine = Engine(cfg, node, store)
        finders = [("aave_v3", s, lambda s=s: next_aave(node, engine, info, minfo, uinfo, force=s))
                   for s in (FLASH_MORPHO, FLASH_AAVE, FLASH_UNISWAP)]
        async def aave_two_hops():  # the same liquidation sold through two pools (exactInput)
            t, liq = await next_aave(node, engine, info, minfo, uinfo)
            if liq is None:
                return t, None
            c, block = liq.call, await node.block_number()
            pools = await read_pools(node, uinfo, block)
            sources = await devnet_flash_sources(node, info, minfo, pools, c.debt, block)
            two = [r for r in devnet_routes(info, c.collateral, c.debt) if len(r.hops) == 2]
            return t, flash_plans.aave(info.pool, c.user, c.collateral, c.debt, liq.plan.repay,
                                       liq.plan.amount_in, two, pools, sources, t + 600, slack_bps=1)

        finders += [("aave_v3", None, aave_two_hops)]
        finders += [("morpho_blue", None, lambda: next_morpho(node, info, minfo, uinfo)),
                    ("compound_v3", None, lambda: next_comet(node, info, minfo, cinfo, uinfo))]
        print("| protocol | flash source | route | own capital gas | capital-free gas | ratio |")
        print("|---|---|---|---:|---:|---:|")
        symbols = {v.lower(): k for k, v in info.tokens.items()}
        for protocol, _, find in finders:
            snap = await rpc(w3, "evm_snapshot", [])
            t, liq = await find()
            if liq is None:
                print(f"| {protocol} | - | no paying liquidation found | | | |")
                continue
            flash_gas = await send(w3, operator, contract, "0x" + liq.calldata.hex(), t)
            await rpc(w3, "evm_revert", [snap])
            snap = await rpc(w3, "evm_snapshot", [])
            own_gas = await own_capital(w3, info, liq, t)
            await rpc(w3, "evm_revert", [snap])
            print(f"| {protocol} | {SOURCE[liq.plan.flash.source]} | {liq.plan.route.describe(symbols)} | "
                  f"{own_gas:,} | {flash_gas:,} | {flash_gas / own_gas:.2f}x |")  # display only
        await w3.provider.disconnect()
    finally:
        store.close()
        await node.close()
        stop_anvil(proc.pid)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
