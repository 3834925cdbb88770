"""Deleverage on the devnet, Compound V3 (the Comet stand-in, base USDC): a protected borrower
whose keeper wallet holds no tokens is deleveraged through KeeperProtection.deleverageComet
(the USDC flash-borrowed from the devnet's Aave Pool, ``supplyTo`` the borrower, WETH taken
with ``withdrawFrom`` through the borrower's ``allow(contract, true)``, sold on Uniswap V3)
while WETH falls 2% a block (Comet's price feeds are the devnet's; the pools are arbitraged
back to them each block). Asserted on chain: Comet's ``isLiquidatable`` is false after every
block, the contract's ``Deleveraged`` events (``cometHealthFactor`` inside the transaction)
land within 0.5% above the target, no ``AbsorbCollateral`` / ``AbsorbDebt`` names the
borrower, and the contract keeps nothing. The contract's ``cometHealthFactor`` equals
keeper's Comet health factor to the wei on every devnet borrower. A deleverage whose swap
pays more than ``max_slippage_bps`` below Comet's prices reverts in simulation, is never
sent, and the borrower gets a ``top_up_failed`` alert. The stop-loss (``close_below_price``)
repays all of the borrow on the first block at or below the price; the rest stays the
borrower's. ``keeper protect setup`` sends ``allow`` once; ``status`` shows it."""

from __future__ import annotations

from tests.integration.own_anvil import anvil, devnet, w3  # noqa: F401  (own anvil: many blocks)

import re

from eth_abi import encode
from eth_utils import to_checksum_address

from keeper.chain.abi import addr_arg, call_data, topic, uint_arg, word
from keeper.chain.rpc import Rpc
from keeper.config import load_config
from keeper.config_types import Secret
from keeper.devnet.api import get_price
from keeper.devnet.artifacts import load_own
from keeper.devnet.accounts import derived_accounts
from keeper.devnet.comet import deploy_comet
from keeper.devnet.lifecycle import comet_config_toml
from keeper.devnet.rpc import rpc
from keeper.devnet.uniswap import deploy_uniswap, dex_config_toml
from keeper.dex.deleverage import DELEVERAGED, SET_KEEPER
from keeper.engine import Engine
from keeper.executors.signer import Signer
from keeper.liquidator_deploy import deploy_checked
from keeper.store import Store
from keeper.units import WAD
from keeper.wiring import build_keeper
from tests.integration.test_deleverage import balance, decline, logs
from tests.integration.test_keeper_actions import LIQUIDATOR_KEY, config, send

TARGET = 130 * WAD // 100
BLOCKS = 16
N_COMET, COMET_SEED = 30, 5
ABSORB_COLLATERAL = topic("AbsorbCollateral(address,address,address,uint256,uint256)")
ABSORB_DEBT = topic("AbsorbDebt(address,address,uint256,uint256)")


async def setup(devnet, w3, tmp_path, delegate: bool = True):
    """Comet, the pools, the contract, the WETH-only Comet borrower closest above HF 1.17 and
    its delegation (``allow`` and ``setKeeper``); keeper's Comet positions at the head."""
    info = devnet.info
    cinfo = await deploy_comet(w3, info, N_COMET, COMET_SEED)
    uinfo = await deploy_uniswap(w3, info)
    node = Rpc(devnet.rpc_url, timeout_s=60.0)
    try:
        code = load_own("KeeperProtection").bytecode + encode(["address"], [uinfo.router]).hex()
        contract = await deploy_checked(node, Signer(Secret(LIQUIDATOR_KEY)), code, {"router()": uinfo.router})
        (tmp_path / "scan.toml").write_text(devnet.config_path.read_text() + comet_config_toml(cinfo))
        store = Store(tmp_path / "scan.sqlite")
        eng = Engine(load_config(tmp_path / "scan.toml"), node, store)
        head = await node.block_number()
        await eng.index(head)
        positions = [p for p in await eng.full_scan(head) if p.protocol == "compound_v3"]
        store.close()
        on_chain = {p.account: word(await node.call(contract, call_data(
            "cometHealthFactor(address,address)", addr_arg(cinfo.comet), addr_arg(p.account)), head))
            for p in positions}
    finally:
        await node.close()
    weth_only = {p["address"] for p in cinfo.positions if set(p["collateral"]) == {"WETH"}}
    candidates = [p for p in positions if p.account in weth_only and p.health_factor_wad
                  and p.health_factor_wad > 117 * WAD // 100]
    borrower = min(candidates, key=lambda p: p.health_factor_wad).account
    if not delegate:
        return cinfo, uinfo, contract, borrower, positions, on_chain
    await rpc(w3, "anvil_impersonateAccount", [borrower])
    await rpc(w3, "anvil_setBalance", [borrower, hex(10**18)])
    await send(w3, borrower, cinfo.comet, call_data("allow(address,bool)", addr_arg(contract), uint_arg(1)))
    await send(w3, borrower, contract, call_data(SET_KEEPER, addr_arg(info.liquidator)))
    await rpc(w3, "anvil_stopImpersonatingAccount", [borrower])
    return cinfo, uinfo, contract, borrower, positions, on_chain


def rule(cinfo, uinfo, borrower: str, contract: str, slippage_bps: int, sink=None) -> str:
    return (comet_config_toml(cinfo) + dex_config_toml(uinfo, None)
            + f'\n[[protect]]\naccount = "{borrower}"\nmarket = "comet"\ntrigger_hf = "1.15"\n'
              f'target_hf = "1.30"\nactions = ["repay:USDC", "deleverage:WETH->USDC"]\n'
              f'contract = "{contract}"\nmax_slippage_bps = {slippage_bps}\n'
            + ("" if sink is None else f'\n[[notify]]\nkind = "webhook"\nurl = "{sink.base_url}/hook"\n'))


async def keeper_for(devnet, tmp_path, cinfo, uinfo, borrower: str, contract: str, slippage_bps: int, sink):
    cfg = load_config(config(devnet, tmp_path, rule(cinfo, uinfo, borrower, contract, slippage_bps, sink)),
                      env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY})
    return await build_keeper(cfg)


async def test_comet_decline_is_deleveraged_to_the_target_and_never_liquidatable(devnet, w3, tmp_path):
    from tests.notify_servers import HttpSink

    info = devnet.info
    cinfo, uinfo, contract, borrower, positions, on_chain = await setup(devnet, w3, tmp_path)
    for p in positions:  # the contract's health factor is keeper's, to the wei
        assert on_chain[p.account] == (p.health_factor_wad or 2**256 - 1), p.account
    assert all([await balance(w3, info.tokens[s], info.liquidator) == 0 for s in ("USDC", "WETH")])
    start = int(await rpc(w3, "eth_blockNumber", []), 16)
    sink = HttpSink()
    await sink.start()
    k = await keeper_for(devnet, tmp_path, cinfo, uinfo, borrower, contract, 100, sink)
    try:
        watch = next(w for w in k.engine.watches if w.adapter.name == "compound_v3")
        for _ in range(BLOCKS):
            await decline(w3, info, uinfo, k)
            (view,) = await watch.adapter.contract_health([borrower], await k.rpc.block_number())
            assert not view.liquidatable
        done = k.store.query("SELECT realized FROM actions WHERE kind = 'top_up' AND result = 'done'")
        alerts = k.store.query("SELECT action FROM alerts WHERE kind = 'top_up_done'")
    finally:
        await k.close()
        await sink.stop()
    events = [e for e in await logs(w3, contract, DELEVERAGED, start)
              if to_checksum_address("0x" + e["topics"][1][-40:]) == borrower]
    assert len(events) >= 2, "the decline should need more than one deleverage"
    assert len(done) == len(events) and len(alerts) == len(done)
    assert all("deleverage done: sold " in a for (a,) in alerts), alerts
    for e in events:
        data = bytes.fromhex(e["data"][2:])
        sold, repaid, received, hf = (word(data, i) for i in range(4))
        assert TARGET <= hf <= TARGET + TARGET * 5 // 1000, hf  # within 0.5% above the target
        assert received >= repaid > 0 and sold > 0
    for t in (ABSORB_COLLATERAL, ABSORB_DEBT):
        assert not [e for e in await logs(w3, cinfo.comet, t, start)
                    if to_checksum_address("0x" + e["topics"][2][-40:]) == borrower]
    for token in info.tokens.values():  # the contract keeps nothing
        assert await balance(w3, token, contract) == 0


async def test_comet_swap_beyond_max_slippage_reverts_in_simulation_and_alerts(devnet, w3, tmp_path):
    from tests.notify_servers import HttpSink

    info = devnet.info
    cinfo, uinfo, contract, borrower, _, _ = await setup(devnet, w3, tmp_path)
    start = int(await rpc(w3, "eth_blockNumber", []), 16)
    nonce0 = int(await rpc(w3, "eth_getTransactionCount", [info.liquidator, "latest"]), 16)
    sink = HttpSink()
    await sink.start()
    # 1 bp: below the cheapest pool's own 0.05% fee, so every sale pays more than allowed
    k = await keeper_for(devnet, tmp_path, cinfo, uinfo, borrower, contract, 1, sink)
    try:
        for _ in range(BLOCKS):
            await decline(w3, info, uinfo, k)
            if k.store.query("SELECT 1 FROM actions WHERE kind = 'top_up' AND account = ?", (borrower,)):
                break
        results = k.store.query("SELECT result FROM actions WHERE kind = 'top_up'")
        alerts = k.store.query("SELECT kind, account FROM alerts WHERE kind LIKE 'top_up%'")
    finally:
        await k.close()
        await sink.stop()
    assert results and {r for (r,) in results} == {"failed"}
    assert await logs(w3, contract, DELEVERAGED, start) == []
    assert ("top_up_failed", borrower) in [(kd, a) for kd, a in alerts]
    sent = int(await rpc(w3, "eth_getTransactionCount", [info.liquidator, "latest"]), 16) - nonce0
    absorbs = await logs(w3, cinfo.comet, ABSORB_DEBT, start)  # keeper may absorb others meanwhile
    assert sent == len({e["transactionHash"] for e in absorbs})  # the deleverage was never sent


async def test_protect_setup_sends_the_comet_allow_once_and_status_shows_it(devnet, w3, tmp_path):
    """Run as the Comet borrower protecting itself: setup deploys the contract and sends
    ``allow(contract, true)``; run again it sends nothing; status shows the delegation."""
    from tests.integration.test_cli import keeper

    cinfo, uinfo, _, borrower, _, _ = await setup(devnet, w3, tmp_path, delegate=False)
    index = [a.address for a in derived_accounts("comet-borrower", COMET_SEED, N_COMET)].index(borrower)
    env = {"KEEPER_PRIVATE_KEY": derived_accounts("comet-borrower", COMET_SEED, N_COMET)[index].private_key}
    await rpc(w3, "anvil_setBalance", [borrower, hex(10**18)])
    path = config(devnet, tmp_path, rule(cinfo, uinfo, borrower, "X", 100).replace('contract = "X"\n', ""))
    first = keeper("protect", "setup", "--config", str(path), env=env)
    assert first.returncode == 0, first.stderr + first.stdout
    contract = re.search(r"deployed KeeperProtection at (0x[0-9a-fA-F]{40})", first.stdout).group(1)
    assert "needed" in first.stdout and "sent" in first.stdout and "Compound V3" in first.stdout
    allowed = await rpc(w3, "eth_call", [{"to": cinfo.comet, "data": "0x" + call_data(
        "isAllowed(address,address)", addr_arg(borrower), addr_arg(contract)).hex()}, "latest"])
    assert int(allowed, 16) == 1
    path.write_text(path.read_text().replace("max_slippage_bps", f'contract = "{contract}"\nmax_slippage_bps'))
    n0 = int(await rpc(w3, "eth_getTransactionCount", [borrower, "latest"]), 16)
    again = keeper("protect", "setup", "--config", str(path), env=env)
    assert again.returncode == 0 and "needed" not in again.stdout and "done" in again.stdout, again.stdout
    assert int(await rpc(w3, "eth_getTransactionCount", [borrower, "latest"]), 16) == n0  # idempotent
    st = keeper("protect", "status", "--config", str(path), env=env)
    assert st.returncode == 0, st.stderr + st.stdout
    assert contract in st.stdout and "MISSING" not in st.stdout and "fires when WETH <= $" in st.stdout


async def test_comet_calls_are_the_borrowers_or_its_keepers_and_checked_on_chain_with_morphos_flash(devnet, w3,
                                                                                                   tmp_path):
    """deleverageComet called directly, the USDC flash-borrowed from Morpho Blue (free): a
    stranger is refused, the base token as collateral is refused, a target above what the
    sale reaches reverts HealthFactorTooLow, 0 bps of slippage reverts SlippageTooHigh; the
    borrower's keeper deleverages and the contract keeps nothing."""
    from eth_utils import keccak

    from keeper.devnet.morpho import deploy_morpho
    from keeper.devnet.uniswap import FAR_DEADLINE
    from keeper.dex.deleverage import FLASH_MORPHO
    from keeper.protocols.compound_v3.deleverage import CometDeleverageQuote, deleverage_calldata

    info = devnet.info
    cinfo, uinfo, contract, borrower, _, on_chain = await setup(devnet, w3, tmp_path)
    minfo = await deploy_morpho(w3, info, 2, 5)
    weth, usdc = info.tokens["WETH"], info.tokens["USDC"]
    assert await balance(w3, usdc, minfo.morpho) > 2_000 * 10**6
    repay = 1_000 * 10**6
    withdraw = 1_010 * 10**8 * 10**18 // await get_price(w3, info, "WETH")  # covers the pool fee

    def calldata(min_hf: int, slippage_bps: int = 100, collateral: str = weth) -> dict:
        q = CometDeleverageQuote(cinfo.comet, contract, borrower, collateral, usdc, repay, withdraw, 500, 0, 0, 0,
                                 0, min_hf, slippage_bps, FLASH_MORPHO, minfo.morpho, FAR_DEADLINE)
        return {"to": contract, "data": "0x" + deleverage_calldata(q).hex()}

    async def reverts_with(sender: str, tx: dict) -> str:
        try:
            await rpc(w3, "eth_call", [{"from": sender, **tx}, "latest"])
        except Exception as e:  # noqa: BLE001  the node's revert, whatever web3 wraps it in
            return str(e)
        return ""

    def sel(signature: str) -> str:
        return keccak(text=signature)[:4].hex()

    assert sel("NotAllowed(address,address)") in await reverts_with(info.spare[0], calldata(0))
    assert sel("NotCollateral(address)") in await reverts_with(info.liquidator, calldata(0, collateral=usdc))
    assert sel("HealthFactorTooLow(uint256,uint256)") in await reverts_with(info.liquidator, calldata(100 * WAD))
    assert sel("SlippageTooHigh(uint256,uint256)") in await reverts_with(info.liquidator, calldata(0, 0))
    hf0 = on_chain[borrower]
    usdc0 = await balance(w3, usdc, borrower)
    tx = calldata(hf0 + 1)  # the sale raises the health factor
    start = int(await rpc(w3, "eth_blockNumber", []), 16)
    await send(w3, info.liquidator, tx["to"], bytes.fromhex(tx["data"][2:]))
    (event,) = await logs(w3, contract, DELEVERAGED, start)
    sold, repaid, received, hf = (word(bytes.fromhex(event["data"][2:]), i) for i in range(4))
    assert sold == withdraw and repay - 1 <= repaid <= repay and received > repay and hf > hf0
    assert await balance(w3, usdc, borrower) == usdc0 + received - repay  # the sale's surplus is the borrower's
    for token in info.tokens.values():
        assert await balance(w3, token, contract) == 0


async def test_comet_stop_loss_closes_the_debt_when_the_price_crosses_and_leaves_the_rest(devnet, w3, tmp_path):
    info = devnet.info
    cinfo, uinfo, contract, borrower, _, _ = await setup(devnet, w3, tmp_path)
    start = int(await rpc(w3, "eth_blockNumber", []), 16)
    stop = await get_price(w3, info, "WETH") * 93 // 100  # crossed on the 4th -2% block
    close = f'close_below_price = {{ asset = "WETH", usd = "{stop // 10**8}.{stop % 10**8:08d}" }}\n'
    text = rule(cinfo, uinfo, borrower, contract, 100).replace('trigger_hf = "1.15"', 'trigger_hf = "1.01"') + close
    k = await build_keeper(load_config(config(devnet, tmp_path, text), env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY}))

    async def comet_view(signature: str, *args: str) -> int:
        data = "0x" + call_data(signature, *(addr_arg(a) for a in args)).hex()
        return int((await rpc(w3, "eth_call", [{"to": cinfo.comet, "data": data}, "latest"]))[:66], 16)

    closed_at = None
    try:
        for n in range(6):
            await decline(w3, info, uinfo, k)
            if closed_at is None and await comet_view("borrowBalanceOf(address)", borrower) == 0:
                closed_at = (n, await get_price(w3, info, "WETH"))
        done = k.store.query("SELECT detail FROM actions WHERE kind = 'top_up' AND result = 'done'")
    finally:
        await k.close()
    assert closed_at is not None, "the stop-loss never closed the USDC borrow"
    n, price = closed_at
    assert price <= stop and n == 3  # on the first block at or below the stop, not before
    (event,) = await logs(w3, contract, DELEVERAGED, start)
    assert len(done) == 1 and "deleveraged: sold" in done[0][0], done
    # what was not sold stays the borrower's: its WETH in Comet, and a base supply of what the
    # flash loan (sized for two minutes of interest) paid beyond the debt
    assert await comet_view("userCollateral(address,address)", borrower, info.tokens["WETH"]) > 0
    assert await comet_view("balanceOf(address)", borrower) > 0
    for token in info.tokens.values():
        assert await balance(w3, token, contract) == 0
    for t in (ABSORB_COLLATERAL, ABSORB_DEBT):
        assert not [e for e in await logs(w3, cinfo.comet, t, start)
                    if to_checksum_address("0x" + e["topics"][2][-40:]) == borrower]
