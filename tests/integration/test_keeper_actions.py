"""The whole loop on the devnet, asserting on chain state: after a crash the keeper
liquidates every profitable liquidatable position exactly once and skips dust; on a gradual
decline a protected account is topped up and never becomes liquidatable."""

from __future__ import annotations

from pathlib import Path

from eth_utils import to_checksum_address

from keeper.chain.abi import topic, word
from keeper.config import load_config
from keeper.devnet.api import apply_price_change, get_price, set_price
from keeper.devnet.rpc import rpc
from keeper.executors.actions import action_key
from keeper.model import Liquidate
from keeper.protocols.aave_v3 import encode as enc
from keeper.units import WAD
from keeper.wiring import build_keeper

LIQUIDATOR_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil #1
LIQUIDATION_CALL = topic("LiquidationCall(address,address,address,uint256,uint256,address,bool)")
DUST = "0x00000000000000000000000000000000d0570001"


async def send(w3, sender: str, to: str, data: bytes) -> None:
    tx_hash = await rpc(w3, "eth_sendTransaction", [{"from": sender, "to": to, "data": "0x" + data.hex(),
                                                     "gas": hex(1_000_000)}])
    for _ in range(50):
        receipt = await rpc(w3, "eth_getTransactionReceipt", [tx_hash])
        if receipt:
            assert int(receipt["status"], 16) == 1, f"tx to {to} reverted"
            return
        await rpc(w3, "evm_mine", [])
    raise AssertionError("no receipt")


async def mint(w3, info, symbol: str, to: str, amount: int) -> None:
    from keeper.chain.abi import addr_arg, call_data, uint_arg
    await send(w3, info.deployer, info.tokens[symbol], call_data("mint(address,uint256)", addr_arg(to), uint_arg(amount)))


async def open_dust_position(w3, info) -> None:
    """A real but tiny loan: its liquidation bonus cannot pay the gas."""
    await rpc(w3, "anvil_setBalance", [DUST, hex(10**18)])
    await rpc(w3, "anvil_impersonateAccount", [DUST])
    weth = info.tokens["WETH"]
    await mint(w3, info, "WETH", DUST, 5 * 10**15)  # $10 of WETH
    await send(w3, DUST, weth, enc.approve(info.pool, 2**256 - 1))
    await send(w3, DUST, info.pool, enc.supply(weth, 5 * 10**15, DUST))
    from keeper.chain.abi import addr_arg, call_data, uint_arg
    await send(w3, DUST, info.pool, call_data("borrow(address,uint256,uint256,uint16,address)",
                                              addr_arg(info.tokens["USDC"]), uint_arg(7_800_000),
                                              uint_arg(2), uint_arg(0), addr_arg(DUST)))


def config(devnet, tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "keeper.toml"
    path.write_text('mode = "live"\n' + devnet.config_path.read_text()
                    + f'\n[store]\npath = "{tmp_path / "k.sqlite"}"\n' + extra)
    return path


async def liquidations(w3, pool: str, from_block: int) -> list[dict]:
    logs = await rpc(w3, "eth_getLogs", [{"address": pool, "topics": ["0x" + LIQUIDATION_CALL.hex()],
                                          "fromBlock": hex(from_block), "toBlock": "latest"}])
    out = []
    for lg in logs:
        data = bytes.fromhex(lg["data"][2:])
        out.append({"user": to_checksum_address("0x" + lg["topics"][3][-40:]),
                    "debt_to_cover": word(data, 0), "collateral": word(data, 1),
                    "liquidator": to_checksum_address(data[64 + 12:96])})
    return out


async def pool_hf(w3, pool: str, user: str) -> int:
    raw = await rpc(w3, "eth_call", [{"to": pool, "data": "0x" + enc.account_data(user).hex()}, "latest"])
    return word(bytes.fromhex(raw[2:]), 5)


async def test_crash_liquidates_every_profitable_position_once_and_skips_dust(devnet, w3, tmp_path):
    info = devnet.info
    for symbol, amount in (("USDC", 10**7 * 10**6), ("DAI", 10**7 * 10**18), ("WETH", 10**4 * 10**18),
                           ("WBTC", 500 * 10**8)):
        await mint(w3, info, symbol, info.liquidator, amount)
    await open_dust_position(w3, info)
    for symbol in ("WETH", "WBTC"):
        await set_price(w3, info, symbol, apply_price_change(await get_price(w3, info, symbol), "-35%"))
    start = int(await rpc(w3, "eth_blockNumber", []), 16)
    borrowers = list(info.borrowers) + [to_checksum_address(DUST)]
    below_one = {b for b in borrowers if await pool_hf(w3, info.pool, b) < WAD}
    assert to_checksum_address(DUST) in below_one and len(below_one) >= 3

    cfg = load_config(config(devnet, tmp_path, "\n[liquidator]\nenabled = true\nmin_profit_base = 0\n"),
                      env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY})
    k = await build_keeper(cfg)
    try:
        head = await k.rpc.block_number()
        await k.engine.index(head)
        await k.engine.full_scan(head)
        await k.executor.drain()
    finally:
        await k.close()

    done = await liquidations(w3, info.pool, start)
    ours = [e for e in done if e["liquidator"] == to_checksum_address(info.liquidator)]
    users = [e["user"] for e in ours]
    assert sorted(users) == sorted(set(users)), "a position was liquidated twice"
    assert set(users) == below_one - {to_checksum_address(DUST)}
    for e in ours:
        assert await pool_hf(w3, info.pool, e["user"]) > 0  # state changed on chain


async def test_gradual_decline_never_makes_the_protected_account_liquidatable(devnet, w3, tmp_path):
    info = devnet.info
    # protect the riskiest WETH-collateral borrower with the liquidator's wallet (repay on behalf)
    cfg0 = load_config(devnet.config_path)
    from keeper.chain.rpc import Rpc
    from keeper.engine import Engine
    from keeper.store import Store
    node, store = Rpc(devnet.rpc_url), Store(tmp_path / "scan.sqlite")
    eng = Engine(cfg0, node, store)
    head = await node.block_number()
    await eng.index(head)
    positions = await eng.full_scan(head)
    store.close()
    await node.close()
    weth_main = [p for p in positions if p.main_collateral == "WETH" and p.health_factor_wad]
    target = min(weth_main, key=lambda p: p.health_factor_wad)
    await mint(w3, info, "USDC", info.liquidator, 10**7 * 10**6)
    await mint(w3, info, "DAI", info.liquidator, 10**7 * 10**18)
    await mint(w3, info, "WETH", info.liquidator, 10**4 * 10**18)
    extra = (f'\n[[protect]]\naccount = "{target.account}"\ntrigger_hf = "1.15"\ntarget_hf = "1.40"\n'
             'actions = ["repay:USDC", "repay:DAI", "supply:WETH"]\n')
    cfg = load_config(config(devnet, tmp_path, extra), env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY})
    k = await build_keeper(cfg)
    lowest = 2**256
    try:
        for _ in range(14):  # -4% a block: a 44% fall in all
            await set_price(w3, info, "WETH", apply_price_change(await get_price(w3, info, "WETH"), "-4%"))
            head = await k.rpc.block_number()
            await k.engine.on_block(head)
            await k.executor.drain()
            lowest = min(lowest, await pool_hf(w3, info.pool, target.account))
        done = k.store.query("SELECT realized FROM actions WHERE kind = 'top_up' AND result = 'done'")
    finally:
        await k.close()
    assert lowest >= WAD, f"the protected account fell to {lowest}"
    assert done, "no top-up was made"
    # each top-up brought the Pool's own health factor back to the target (1.40)
    assert all(int(hf) >= 140 * WAD // 100 for (hf,) in done)


async def crash_and_fund(w3, info) -> None:
    for symbol, amount in (("USDC", 10**7 * 10**6), ("DAI", 10**7 * 10**18), ("WETH", 10**4 * 10**18),
                           ("WBTC", 500 * 10**8)):
        await mint(w3, info, symbol, info.liquidator, amount)
    for symbol in ("WETH", "WBTC"):
        await set_price(w3, info, symbol, apply_price_change(await get_price(w3, info, symbol), "-35%"))


async def nonce(w3, address: str) -> int:
    return int(await rpc(w3, "eth_getTransactionCount", [address, "latest"]), 16)


async def test_dry_run_decides_and_simulates_but_sends_nothing(devnet, w3, tmp_path):
    info = devnet.info
    await crash_and_fund(w3, info)
    start, n0 = int(await rpc(w3, "eth_blockNumber", []), 16), await nonce(w3, info.liquidator)
    path = config(devnet, tmp_path, "\n[liquidator]\nenabled = true\n")
    path.write_text(path.read_text().replace('mode = "live"', 'mode = "dry_run"'))
    cfg = load_config(path, env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY})
    k = await build_keeper(cfg)
    try:
        head = await k.rpc.block_number()
        await k.engine.index(head)
        await k.engine.full_scan(head)
        await k.executor.drain()
        rows = k.store.query("SELECT result FROM actions WHERE kind = 'liquidate'")
    finally:
        await k.close()
    assert rows and {r for (r,) in rows} == {"dry_run"}
    assert await nonce(w3, info.liquidator) == n0
    assert await liquidations(w3, info.pool, start) == []


async def test_a_lost_race_is_recorded_as_lost_and_nothing_is_sent(devnet, w3, tmp_path):
    info = devnet.info
    await crash_and_fund(w3, info)
    cfg = load_config(config(devnet, tmp_path, "\n[liquidator]\nenabled = true\n"),
                      env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY})
    k = await build_keeper(cfg)
    try:
        head = await k.rpc.block_number()
        await k.engine.index(head)
        k.executor.submit = lambda decisions, adapter, market: 0  # decide now, act by hand later
        await k.engine.full_scan(head)
        w = k.engine.watches[0]
        decisions = [d for d in await k.engine.responder.after_tick(w, w.market, [])
                     if isinstance(d, Liquidate)]
        assert decisions
        # the market heals before the keeper acts: prices come back
        for symbol in ("WETH", "WBTC"):
            await set_price(w3, info, symbol, apply_price_change(await get_price(w3, info, symbol), "+60%"))
        n0 = await nonce(w3, info.liquidator)
        result = await k.executor.act(decisions[0], w.adapter, w.market)
        assert result.result == "lost"
        assert await nonce(w3, info.liquidator) == n0  # nothing signed or sent
        assert not k.executor.tx.already_done(action_key(decisions[0]))
    finally:
        await k.close()


async def test_keeper_run_live_never_logs_the_private_key(devnet, w3, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    info = devnet.info
    await crash_and_fund(w3, info)
    path = config(devnet, tmp_path, "\n[liquidator]\nenabled = true\n\n[monitor]\nscan_interval_s = 1\n")
    start = int(await rpc(w3, "eth_blockNumber", []), 16)
    proc = subprocess.Popen([sys.executable, "-m", "keeper", "run", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if [e for e in await liquidations(w3, info.pool, start)
                    if e["liquidator"] == to_checksum_address(info.liquidator)]:
                break
            await __import__("asyncio").sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert '"liquidation.done"' in out, out[-3000:]
    assert '"tx.sent"' in out
    key = LIQUIDATOR_KEY[2:]
    for form in (key, key.upper(), "0x" + key):
        assert form not in out
