"""`make demo`'s deleverage scene: twin borrowers on Morpho Blue WETH/USDC, the same collateral and the
same debt (health factor 1.20), one protected by deleverage, the other not.

The protected twin holds nothing spare and the keeper's wallet spends nothing on it: it has
delegated to keeper's KeeperProtection contract (``setAuthorization`` on Morpho Blue, ``setKeeper``
naming the keeper key), and its ``[[protect]]`` rule says ``deleverage:WETH->USDC``. When the
crash takes it below 1.16 the keeper flash-borrows USDC, repays part of its debt, withdraws just
enough WETH and sells it on a Uniswap V3 pool (npm v3-core / v3-periphery, deployed here at the
oracle's prices and arbitraged back to it after each WETH step) so that its health factor is back
at 1.30; the contract checks the target and the swap price on chain. The other twin, with no
rule, is liquidated by whoever is first (here, the keeper's own liquidator).

Set-up only (the twins' transactions are sent with anvil's impersonation, as the devnet does)
and the words the demo prints; what the keeper does is ``keeper run``'s own work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from eth_abi import encode

from keeper.chain.abi import addr_arg, call_data, selector, uint_arg
from keeper.chain.rpc import Rpc
from keeper.config_types import Secret
from keeper.devnet.accounts import derived_accounts
from keeper.devnet.artifacts import load_own
from keeper.devnet.morpho import ORACLE_PRICE_SCALE, get_morpho_price
from keeper.devnet.rpc import rpc, wait_receipt
from keeper.errors import DevnetError
from keeper.devnet.uniswap import UniswapInfo, align_pools, deploy_uniswap, dex_config_toml
from keeper.dex.deleverage import SET_KEEPER
from keeper.executors.signer import Signer
from keeper.liquidator_deploy import deploy_checked
from keeper.model import Position
from keeper.units import WAD, format_hf

COLLATERAL, DEBT, LABEL = "WETH", "USDC", "WETH/USDC"
MARKET = "morpho"  # the devnet config's name for its Morpho Blue markets (devnet.lifecycle)
TRIGGER, TARGET = "1.16", "1.30"  # the twins cross 1.16 on WETH steps a WBTC step follows
TWIN_HF_BPS, TWIN_WETH = 12_000, 20 * 10**18
MARKET_PARAMS = "(address,address,address,address,uint256)"
_HF_AFTER = re.compile(r"health factor after (\d+)")  # in the Deleveraged event's words


@dataclass(frozen=True)
class Scene:
    uinfo: UniswapInfo  # only the WETH/USDC pools: the ones the crash keeps at the oracle's price
    contract: str  # KeeperProtection
    saved: str  # the twin protected by deleverage
    neighbour: str  # the twin with no rule

    def protect_toml(self) -> str:
        return (dex_config_toml(self.uinfo, None)
                + f'\n[[protect]]  # the deleverage scene: repaid from its own collateral\n'
                  f'account = "{self.saved}"\nmarket = "{MARKET}"\n'
                  f'trigger_hf = "{TRIGGER}"\ntarget_hf = "{TARGET}"\n'
                  f'actions = ["deleverage:{COLLATERAL}->{DEBT}"]\ncontract = "{self.contract}"\n'
                  f'max_slippage_bps = 100\n')


async def set_up(w3, info, minfo, keeper_key: str) -> Scene:
    """Uniswap V3, KeeperProtection (deployed by the keeper key), the twins' loans and the
    protected twin's delegation."""
    uinfo = await deploy_uniswap(w3, info)
    node = Rpc(str(w3.provider.endpoint_uri), timeout_s=60.0)
    try:
        code = load_own("KeeperProtection").bytecode + encode(["address"], [uinfo.router]).hex()
        contract = await deploy_checked(node, Signer(Secret(keeper_key)), code, {"router()": uinfo.router})
    finally:
        await node.close()
    mid = minfo.market(LABEL)
    params = minfo.markets[mid].as_tuple()
    price = await get_morpho_price(w3, minfo, mid)  # 1e36-scaled, loan units per collateral unit
    borrow = TWIN_WETH * price // ORACLE_PRICE_SCALE * params[4] // WAD * 10_000 // TWIN_HF_BPS
    saved, neighbour = (a.address for a in derived_accounts("demo-twin", 1, 2))
    for twin in (saved, neighbour):
        await _as(w3, twin, [
            (info.tokens[COLLATERAL], call_data("mint(uint256)", uint_arg(TWIN_WETH))),
            (info.tokens[COLLATERAL], call_data("approve(address,uint256)", addr_arg(minfo.morpho),
                                                uint_arg(TWIN_WETH))),
            (minfo.morpho, selector(f"supplyCollateral({MARKET_PARAMS},uint256,address,bytes)")
             + encode([MARKET_PARAMS, "uint256", "address", "bytes"], [params, TWIN_WETH, twin, b""])),
            (minfo.morpho, selector(f"borrow({MARKET_PARAMS},uint256,uint256,address,address)")
             + encode([MARKET_PARAMS, "uint256", "uint256", "address", "address"], [params, borrow, 0, twin, twin])),
        ])
    await _as(w3, saved, [
        (minfo.morpho, call_data("setAuthorization(address,bool)", addr_arg(contract), uint_arg(1))),
        (contract, call_data(SET_KEEPER, addr_arg(Signer(Secret(keeper_key)).address)))])
    pools = tuple(p for p in uinfo.pools if {p.symbol0.upper(), p.symbol1.upper()} == {COLLATERAL, DEBT})
    return Scene(replace(uinfo, pools=pools), contract, saved, neighbour)


async def _as(w3, who: str, calls: list[tuple[str, bytes]]) -> None:
    await rpc(w3, "anvil_impersonateAccount", [who])
    await rpc(w3, "anvil_setBalance", [who, hex(10**18)])  # gas
    try:
        for to, data in calls:
            tx = {"from": who, "to": to, "data": "0x" + data.hex(), "gas": hex(400_000)}
            receipt = await wait_receipt(w3, await rpc(w3, "eth_sendTransaction", [tx]))
            if int(receipt["status"], 16) != 1:
                raise DevnetError(f"the deleverage scene's call from {who} to {to} reverted")
    finally:
        await rpc(w3, "anvil_stopImpersonatingAccount", [who])


async def follow(w3, info, scene: Scene, symbol: str) -> None:
    """After a price step: the scene's pools back at the oracle's price (arbitrage)."""
    if symbol == COLLATERAL:
        await align_pools(w3, info, scene.uinfo, {COLLATERAL})


def intro(scene: Scene, before: list[Position]) -> str:
    hf = {p.account: p.health_factor_wad for p in before}
    return (f"deleverage scene, twins on Morpho Blue WETH/USDC with the same loan: {scene.saved} "
            f"(HF {format_hf(hf.get(scene.saved))}) is protected from its own position: below {TRIGGER} "
            f"keeper sells just enough of its WETH for USDC through KeeperProtection {scene.contract} "
            f"(delegated with setAuthorization and setKeeper; no spare cash anywhere) to bring it back to "
            f"{TARGET}. Its twin {scene.neighbour} (HF {format_hf(hf.get(scene.neighbour))}) has no rule.")


def outcome(scene: Scene, before: list[Position], after: list[Position], rows: list[dict]) -> list[str]:
    """How the twins ended, from the keeper's actions and the scan after the crash."""
    lines = []
    for who, account in (("protected", scene.saved), ("unprotected", scene.neighbour)):
        was = next((p.health_factor_wad for p in before if p.account == account), None)
        now = next((p.health_factor_wad for p in after if p.account == account), None)
        mine = [r for r in rows if account in (r["account"] or "").split(",") and r["result"] == "done"]
        dels = [r for r in mine if r["kind"] == "top_up" and (r["detail"] or "").startswith("deleveraged")]
        liqs = [r for r in mine if r["kind"] == "liquidate"]
        hfs = [format_hf(int(m.group(1))) for r in dels if (m := _HF_AFTER.search(r["detail"]))]
        did = f"deleveraged {len(dels)}x, HF after each {', '.join(hfs)}" if dels else ""
        did += ("; " if did and liqs else "") + (f"LIQUIDATED (tx {liqs[0]['tx_hash']})" if liqs else "")
        lines.append(f"{who:11} twin {account}: HF {format_hf(was)} before the crash, {format_hf(now)} now; "
                     f"{did or 'nothing done'}")
    return lines
