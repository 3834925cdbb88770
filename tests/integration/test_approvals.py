"""Approvals are in place at start-up, never on the send path: a live keeper approves the
Pool for every reserve once when it is built, a second start sends nothing, a dry-run start
sends nothing, and a liquidation after start-up sends only the liquidation."""

from __future__ import annotations

from pathlib import Path

from keeper.chain.abi import word
from keeper.chain.erc20 import allowance_call
from keeper.config import load_config
from keeper.devnet.api import apply_price_change, get_price, set_price
from keeper.devnet.rpc import rpc
from keeper.executors.approvals import READY
from keeper.wiring import build_keeper

from tests.integration.test_keeper_actions import LIQUIDATOR_KEY, liquidations, mint

SELECTOR_LIQUIDATION = "0x00a718a9"  # liquidationCall(address,address,address,uint256,bool)


def _config(devnet, tmp_path: Path, mode: str, extra: str = "") -> Path:
    path = tmp_path / f"keeper-{mode}.toml"
    path.write_text(f'mode = "{mode}"\n' + devnet.config_path.read_text()
                    + f'\n[store]\npath = "{tmp_path / "k.sqlite"}"\n'
                    + "\n[liquidator]\nenabled = true\nmin_profit_base = 0\n" + extra)
    return path


async def _allowances(w3, info) -> dict[str, int]:
    out = {}
    for symbol, token in info.tokens.items():
        raw = await rpc(w3, "eth_call", [{"to": token, "data": "0x" + allowance_call(
            token, info.liquidator, info.pool).hex()}, "latest"])
        out[symbol] = word(bytes.fromhex(raw[2:]))
    return out


async def _nonce(w3, address: str) -> int:
    return int(await rpc(w3, "eth_getTransactionCount", [address, "latest"]), 16)


async def _build(devnet, tmp_path: Path, mode: str, extra: str = ""):
    env = {"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY}
    return await build_keeper(load_config(_config(devnet, tmp_path, mode, extra), env=env))


async def test_an_empty_wallet_approves_nothing_at_start_up(devnet, w3, tmp_path):
    """A keeper holding only the gas coin (a capital-free operator) spends no gas on approvals
    it may never use: they wait for the first action that needs them."""
    info = devnet.info
    before = await _nonce(w3, info.liquidator)
    k = await _build(devnet, tmp_path, "live")
    try:
        assert k.executor.approvals.ready == set()
        assert len(k.executor.approvals.deferred) == len(info.tokens)
    finally:
        await k.close()
    assert await _nonce(w3, info.liquidator) == before


async def test_live_start_approves_every_reserve_once(devnet, w3, tmp_path):
    info = devnet.info
    assert all(v == 0 for v in (await _allowances(w3, info)).values())
    for symbol in info.tokens:  # the operator holds inventory of every reserve
        await mint(w3, info, symbol, info.liquidator, 10**6 * 10**info.decimals[symbol])
    before = await _nonce(w3, info.liquidator)
    k = await _build(devnet, tmp_path, "live")
    try:
        ready = set(k.executor.approvals.ready)
    finally:
        await k.close()
    have = await _allowances(w3, info)
    assert all(v >= READY for v in have.values()), have
    assert ready == {f"{t}:{info.pool}".lower() for t in info.tokens.values()}
    assert await _nonce(w3, info.liquidator) == before + len(info.tokens)

    k = await _build(devnet, tmp_path, "live")  # a restart finds them in place: sends nothing
    try:
        assert len(k.executor.approvals.ready) == len(info.tokens)
    finally:
        await k.close()
    assert await _nonce(w3, info.liquidator) == before + len(info.tokens)


async def test_dry_run_start_sends_no_approval(devnet, w3, tmp_path):
    info = devnet.info
    before = await _nonce(w3, info.liquidator)
    k = await _build(devnet, tmp_path, "dry_run")
    try:
        assert k.executor.approvals.ready == set()
    finally:
        await k.close()
    assert await _nonce(w3, info.liquidator) == before
    assert all(v == 0 for v in (await _allowances(w3, info)).values())


async def test_liquidation_after_start_sends_no_approve(devnet, w3, tmp_path):
    info = devnet.info
    for symbol, amount in (("USDC", 10**7 * 10**6), ("DAI", 10**7 * 10**18), ("WETH", 10**4 * 10**18),
                           ("WBTC", 500 * 10**8)):
        await mint(w3, info, symbol, info.liquidator, amount)
    k = await _build(devnet, tmp_path, "live")
    try:
        after_start = await _nonce(w3, info.liquidator)
        start = int(await rpc(w3, "eth_blockNumber", []), 16)
        for symbol in ("WETH", "WBTC"):
            await set_price(w3, info, symbol, apply_price_change(await get_price(w3, info, symbol), "-35%"))
        head = await k.rpc.block_number()
        await k.engine.index(head)
        await k.engine.full_scan(head)
        await k.executor.drain()
    finally:
        await k.close()
    ours = [e for e in await liquidations(w3, info.pool, start) if e["liquidator"] == info.liquidator]
    assert ours, "the crash made no liquidation"
    sent = await _nonce(w3, info.liquidator) - after_start
    assert sent == len(ours)  # every transaction after start-up was a liquidation
    for n in range(start + 1, int(await rpc(w3, "eth_blockNumber", []), 16) + 1):
        block = await rpc(w3, "eth_getBlockByNumber", [hex(n), True])
        for tx in block["transactions"]:
            if tx["from"].lower() == info.liquidator.lower():
                assert tx["input"].startswith(SELECTOR_LIQUIDATION), tx["input"][:10]
