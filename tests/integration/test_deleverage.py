"""Deleverage on the devnet (Aave V3 3.0.2): a protected borrower whose keeper wallet holds no
tokens is protected from its own position through keeper's KeeperProtection contract.

The borrower delegates (aToken allowance to the contract, ``setKeeper`` of the keeper key);
WETH then falls 2% a block (the Uniswap V3 pools arbitraged back to the oracle each block) and
the whole keeper runs each block (build_keeper, engine.on_block, executor drain, live mode).
Asserted on chain: the contract's ``Deleveraged`` events (the Pool's health factor inside the
transaction) land within 0.5% above the target, the Pool's health factor never falls below 1,
no ``LiquidationCall`` names the borrower, and the contract holds nothing; each deleverage
raises a ``deleverage_sent`` alert (health factor now, what will be sold and repaid) once it is
broadcast and a ``top_up_done`` one with the receipt's numbers after it. A deleverage whose
swap pays more than ``max_slippage_bps`` below the oracle reverts in simulation, is never
sent, and the borrower gets a ``top_up_failed`` alert.
"""

from __future__ import annotations

from tests.integration.own_anvil import anvil, devnet, w3  # noqa: F401  (own anvil: many blocks)

from pathlib import Path

from eth_abi import encode
from eth_utils import to_checksum_address

from keeper.chain.abi import topic, word
from keeper.chain.rpc import Rpc
from keeper.config import load_config
from keeper.config_types import Secret
from keeper.devnet.api import apply_price_change, get_price, set_price
from keeper.devnet.artifacts import load_own
from keeper.devnet.rpc import rpc
from keeper.devnet.uniswap import align_pools, deploy_uniswap, dex_config_toml
from keeper.engine import Engine
from keeper.executors.signer import Signer
from keeper.liquidator_deploy import deploy_checked
from keeper.protocols.aave_v3 import encode as enc
from keeper.protocols.aave_v3.deleverage import set_keeper_calldata
from keeper.store import Store
from keeper.units import WAD
from keeper.wiring import build_keeper
from tests.integration.test_keeper_actions import LIQUIDATION_CALL, LIQUIDATOR_KEY, config, pool_hf, send

DELEVERAGED = topic("Deleveraged(address,address,address,uint256,uint256,uint256,uint256)")
TARGET = 130 * WAD // 100
BLOCKS = 16  # -2% a block: WETH ends 28% lower


async def riskiest_weth_usdc_borrower(devnet, node: Rpc, tmp_path: Path) -> str:
    """The devnet borrower with WETH as main collateral and USDC debt closest to HF 1.15."""
    store = Store(tmp_path / "scan.sqlite")
    eng = Engine(load_config(devnet.config_path), node, store)
    head = await node.block_number()
    await eng.index(head)
    positions = await eng.full_scan(head)
    store.close()
    usdc = devnet.info.tokens["USDC"]
    candidates = [p for p in positions if p.main_collateral == "WETH" and p.health_factor_wad
                  and usdc in p.assets and p.health_factor_wad > 115 * WAD // 100]
    return min(candidates, key=lambda p: p.health_factor_wad).account


async def setup(devnet, w3, tmp_path: Path):
    """Uniswap pools, the contract (deployed by the keeper key), the riskiest WETH/USDC
    borrower and its delegation."""
    info = devnet.info
    uinfo = await deploy_uniswap(w3, info)
    node = Rpc(devnet.rpc_url, timeout_s=60.0)
    try:
        code = load_own("KeeperProtection").bytecode + encode(["address"], [uinfo.router]).hex()
        contract = await deploy_checked(node, Signer(Secret(LIQUIDATOR_KEY)), code, {"router()": uinfo.router})
        borrower = await riskiest_weth_usdc_borrower(devnet, node, tmp_path)
    finally:
        await node.close()
    await rpc(w3, "anvil_impersonateAccount", [borrower])
    await rpc(w3, "anvil_setBalance", [borrower, hex(10**18)])
    await send(w3, borrower, info.a_tokens["WETH"], enc.approve(contract, 2**256 - 1))
    await send(w3, borrower, contract, set_keeper_calldata(info.liquidator))
    await rpc(w3, "anvil_stopImpersonatingAccount", [borrower])
    return info, uinfo, contract, borrower


def rule(borrower: str, contract: str, slippage_bps: int) -> str:
    return (f'\n[[protect]]\naccount = "{borrower}"\ntrigger_hf = "1.15"\ntarget_hf = "1.30"\n'
            f'actions = ["repay:USDC", "deleverage:WETH->USDC"]\ncontract = "{contract}"\n'
            f'max_slippage_bps = {slippage_bps}\n')


async def logs(w3, address: str, t: bytes, from_block: int) -> list[dict]:
    return await rpc(w3, "eth_getLogs", [{"address": address, "topics": ["0x" + t.hex()],
                                          "fromBlock": hex(from_block), "toBlock": "latest"}])


async def balance(w3, token: str, who: str) -> int:
    raw = await rpc(w3, "eth_call", [{"to": token, "data": "0x" + enc.balance_of(who).hex()}, "latest"])
    return int(raw, 16)


async def decline(w3, info, uinfo, k) -> None:
    await set_price(w3, info, "WETH", apply_price_change(await get_price(w3, info, "WETH"), "-2%"))
    await align_pools(w3, info, uinfo, {"WETH"})
    await k.engine.on_block(await k.rpc.block_number())
    await k.executor.drain()


async def test_decline_is_deleveraged_to_the_target_and_never_liquidatable(devnet, w3, tmp_path):
    from tests.notify_servers import HttpSink

    info, uinfo, contract, borrower = await setup(devnet, w3, tmp_path)
    assert all([await balance(w3, info.tokens[s], info.liquidator) == 0 for s in ("USDC", "WETH")])
    start = int(await rpc(w3, "eth_blockNumber", []), 16)
    sink = HttpSink()
    await sink.start()
    extra = (dex_config_toml(uinfo, None) + rule(borrower, contract, 100)
             + f'\n[[notify]]\nkind = "webhook"\nurl = "{sink.base_url}/hook"\n')
    cfg = load_config(config(devnet, tmp_path, extra), env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY})
    k = await build_keeper(cfg)
    lowest = 2**256
    try:
        for _ in range(BLOCKS):
            await decline(w3, info, uinfo, k)
            lowest = min(lowest, await pool_hf(w3, info.pool, borrower))
        done = k.store.query("SELECT realized FROM actions WHERE kind = 'top_up' AND result = 'done'")
        alerts = k.store.query("SELECT action FROM alerts WHERE kind = 'top_up_done'")
        told = k.store.query("SELECT kind, action FROM alerts WHERE kind IN ('deleverage_sent', 'top_up_done') "
                             "ORDER BY rowid")
    finally:
        await k.close()
        await sink.stop()
    assert len(alerts) == len(done) and all("deleverage done: sold " in a and "below the oracle" in a
                                            for (a,) in alerts), alerts
    # worded as a deleverage, tokens by symbol ("sold 123 WETH, repaid 456 USDC"), not by address
    assert all( " WETH, repaid " in a and " of 0x" not in a
               for (a,) in alerts), alerts
    # each deleverage: "before" (HF now, what will be sold and repaid) once it is sent, then "after"
    assert [kd for kd, _ in told] == ["deleverage_sent", "top_up_done"] * len(done), told
    for (_, before), (_, after) in zip(told[::2], told[1::2], strict=True):
        sold = before.split("sell ", 1)[1].split(" ", 1)[0]
        assert "below trigger" in before and " WETH " in before and "to repay" in before, before
        assert f"sold {sold} WETH" in after, (before, after)  # the same sale, then what it did
    events = [e for e in await logs(w3, contract, DELEVERAGED, start)
              if to_checksum_address("0x" + e["topics"][1][-40:]) == borrower]
    assert len(events) >= 2, "the decline should need more than one deleverage"
    assert len(done) == len(events)
    for e in events:
        data = bytes.fromhex(e["data"][2:])
        sold, repaid, received, hf = (word(data, i) for i in range(4))
        assert TARGET <= hf <= TARGET + TARGET * 5 // 1000, hf  # within 0.5% above the target
        assert received >= repaid > 0 and sold > 0
    assert lowest >= WAD, f"the borrower fell to {lowest}"
    assert not [e for e in await logs(w3, info.pool, LIQUIDATION_CALL, start)
                if to_checksum_address("0x" + e["topics"][3][-40:]) == borrower]
    for token in info.tokens.values():  # the contract keeps nothing
        assert await balance(w3, token, contract) == 0


async def test_a_swap_beyond_max_slippage_reverts_in_simulation_and_alerts(devnet, w3, tmp_path):
    from tests.notify_servers import HttpSink

    info, uinfo, contract, borrower = await setup(devnet, w3, tmp_path)
    sink = HttpSink()
    await sink.start()
    start = int(await rpc(w3, "eth_blockNumber", []), 16)
    nonce0 = int(await rpc(w3, "eth_getTransactionCount", [info.liquidator, "latest"]), 16)
    # 1 bp: below the cheapest pool's own 0.05% fee, so every sale pays more than allowed
    extra = (dex_config_toml(uinfo, None) + rule(borrower, contract, 1)
             + f'\n[[notify]]\nkind = "webhook"\nurl = "{sink.base_url}/hook"\n')
    k = await build_keeper(load_config(config(devnet, tmp_path, extra), env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY}))
    try:
        for _ in range(BLOCKS):
            await decline(w3, info, uinfo, k)
            if k.store.query("SELECT 1 FROM actions WHERE kind = 'top_up'"):
                break
        results = k.store.query("SELECT result FROM actions WHERE kind = 'top_up'")
        alerts = k.store.query("SELECT kind, account FROM alerts WHERE kind LIKE 'top_up%'")
        before = k.store.query("SELECT 1 FROM alerts WHERE kind = 'deleverage_sent'")
    finally:
        await k.close()
        await sink.stop()
    assert results and {r for (r,) in results} == {"failed"}
    assert int(await rpc(w3, "eth_getTransactionCount", [info.liquidator, "latest"]), 16) == nonce0  # never sent
    assert await logs(w3, contract, DELEVERAGED, start) == []
    assert ("top_up_failed", borrower) in [(kd, a) for kd, a in alerts]
    assert before == []  # never sent: no "before" alert


async def test_only_the_borrower_or_its_keeper_may_call_and_the_target_is_checked_on_chain(devnet, w3, tmp_path):
    from eth_utils import keccak

    from keeper.devnet.uniswap import FAR_DEADLINE
    from keeper.protocols.aave_v3.deleverage import FLASH_AAVE, DeleverageQuote, deleverage_calldata

    info, uinfo, contract, borrower = await setup(devnet, w3, tmp_path)
    weth, usdc = info.tokens["WETH"], info.tokens["USDC"]
    repay = 1_000 * 10**6
    withdraw = 1_010 * 10**8 * 10**18 // await get_price(w3, info, "WETH")  # covers the fee and premium

    def calldata(min_hf: int, slippage_bps: int = 100) -> str:
        q = DeleverageQuote(info.pool, contract, borrower, weth, usdc, repay, withdraw, 500, 0, 0, 0, 0,
                            min_hf, slippage_bps, FLASH_AAVE, info.pool)
        return "0x" + deleverage_calldata(q, FAR_DEADLINE).hex()

    async def reverts_with(sender: str, data: str) -> str:
        try:
            await rpc(w3, "eth_call", [{"from": sender, "to": contract, "data": data}, "latest"])
        except Exception as e:  # noqa: BLE001  the node's revert, whatever web3 wraps it in
            return str(e)
        return ""

    def sel(signature: str) -> str:
        return keccak(text=signature)[:4].hex()

    stranger = info.spare[0]
    assert sel("NotAllowed(address,address)") in await reverts_with(stranger, calldata(0))
    assert await reverts_with(info.liquidator, calldata(0)) == ""  # the designated keeper may
    assert sel("HealthFactorTooLow(uint256,uint256)") in await reverts_with(info.liquidator, calldata(100 * WAD))
    assert sel("SlippageTooHigh(uint256,uint256)") in await reverts_with(info.liquidator, calldata(0, 0))
    # the borrower itself may call; what the swap paid beyond the flash loan is the borrower's
    before = await balance(w3, usdc, borrower)
    hf0 = await pool_hf(w3, info.pool, borrower)
    await rpc(w3, "anvil_impersonateAccount", [borrower])
    await send(w3, borrower, contract, bytes.fromhex(calldata(0)[2:]))
    await rpc(w3, "anvil_stopImpersonatingAccount", [borrower])
    assert await balance(w3, usdc, borrower) > before
    assert await pool_hf(w3, info.pool, borrower) > hf0
    for token in info.tokens.values():
        assert await balance(w3, token, contract) == 0


async def test_stop_loss_closes_the_debt_when_the_price_crosses_and_leaves_the_rest(devnet, w3, tmp_path):
    info, uinfo, contract, borrower = await setup(devnet, w3, tmp_path)
    start = int(await rpc(w3, "eth_blockNumber", []), 16)
    price0 = await get_price(w3, info, "WETH")
    stop = price0 * 93 // 100  # crossed on the 4th -2% block
    stop_text = f"{stop // 10**8}.{stop % 10**8:08d}"
    stop_rule = (rule(borrower, contract, 100).replace('trigger_hf = "1.15"', 'trigger_hf = "1.01"')
                 + f'close_below_price = {{ asset = "WETH", usd = "{stop_text}" }}\n')
    cfg = load_config(config(devnet, tmp_path, dex_config_toml(uinfo, None) + stop_rule),
                      env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY})
    debt_token, a_weth = info.variable_debt_tokens["USDC"], info.a_tokens["WETH"]
    k = await build_keeper(cfg)
    closed_at = None
    try:
        for n in range(6):
            await decline(w3, info, uinfo, k)
            if closed_at is None and await balance(w3, debt_token, borrower) == 0:
                closed_at = (n, await get_price(w3, info, "WETH"))
    finally:
        await k.close()
    assert closed_at is not None, "the stop-loss never closed the USDC debt"
    n, price = closed_at
    assert price <= stop and n == 3  # on the first block at or below the stop, not before
    (event,) = [e for e in await logs(w3, contract, DELEVERAGED, start)]
    assert await balance(w3, a_weth, borrower) > 0  # what was not sold stays the borrower's
    for token in info.tokens.values():
        assert await balance(w3, token, contract) == 0
    assert not [e for e in await logs(w3, info.pool, LIQUIDATION_CALL, start)
                if to_checksum_address("0x" + e["topics"][3][-40:]) == borrower]
