""""Cannot protect" end to end on the devnet, alerts at a loopback webhook: a protected account
falls below its trigger while the keeper's wallet holds none of its configured tokens -> one
``protect_failed`` alert however many ticks pass; the wallet is funded -> the top-up is made
and one ``protect_failed_recovered`` follows. A top-up that reverts -> ``top_up_failed``."""

from __future__ import annotations

import json
import time

from keeper.chain.abi import addr_arg, call_data, uint_arg, word
from keeper.config import load_config
from keeper.devnet.api import apply_price_change, get_price, set_price
from keeper.devnet.rpc import rpc
from keeper.model import TopUp
from keeper.units import WAD
from keeper.wiring import build_keeper
from tests.integration.test_keeper_actions import LIQUIDATOR_KEY, config, mint, nonce, pool_hf, send
from tests.notify_servers import HttpSink


async def balance(w3, token: str, who: str) -> int:
    raw = await rpc(w3, "eth_call", [{"to": token, "data": "0x" + call_data("balanceOf(address)", addr_arg(who)).hex()}, "latest"])
    return word(bytes.fromhex(raw[2:]))


async def weakest_weth_borrower(w3, info) -> tuple[str, int]:
    """The WETH-backed borrower with the lowest health factor after a 10 % WETH drop."""
    await set_price(w3, info, "WETH", apply_price_change(await get_price(w3, info, "WETH"), "-10%"))
    hfs = {b: await pool_hf(w3, info.pool, b) for b in info.borrowers}
    account = min((b for b in hfs if hfs[b] >= WAD), key=lambda b: hfs[b])
    return account, hfs[account]


def protect(account: str, hf: int) -> str:
    trigger = hf * 105 // 100  # the account is below it now
    return (f'\n[[protect]]\naccount = "{account}"\ntrigger_hf = "{trigger / WAD:.6f}"\n'
            f'target_hf = "{(trigger + WAD // 5) / WAD:.6f}"\n'
            'actions = ["repay:USDC", "repay:DAI", "supply:WETH"]\n')


def kinds(sink: HttpSink, account: str) -> list[str]:
    bodies = [json.loads(r.body) for r in sink.accepted("/hook")]
    return [b["kind"] for b in bodies if b["account"] == account]


async def protecting(devnet, tmp_path, account: str, hf: int):
    """A loopback webhook and a live keeper protecting ``account``, alerting the webhook."""
    sink = HttpSink()
    await sink.start()
    path = config(devnet, tmp_path, protect(account, hf)
                  + f'\n[[notify]]\nkind = "webhook"\nurl = "{sink.base_url}/hook"\n')
    return sink, await build_keeper(load_config(path, env={"KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY}))


async def tick(k) -> None:
    await k.engine.on_block(await k.rpc.block_number())
    await k.executor.drain()
    await k.notifications.deliver_due(time.time() + 1)


async def test_cannot_protect_alerts_once_and_recovers_when_the_wallet_is_funded(devnet, w3, tmp_path):
    info = devnet.info
    for symbol in ("USDC", "DAI", "WETH"):  # the wallet holds none of the configured tokens
        assert await balance(w3, info.tokens[symbol], info.liquidator) == 0
    account, hf = await weakest_weth_borrower(w3, info)
    sink, k = await protecting(devnet, tmp_path, account, hf)
    n0 = await nonce(w3, info.liquidator)
    try:
        for _ in range(3):  # three ticks below the trigger, nothing the wallet can pay
            await tick(k)
            await rpc(w3, "evm_mine", [])
        assert kinds(sink, account).count("protect_failed") == 1, kinds(sink, account)
        assert await nonce(w3, info.liquidator) == n0  # nothing was sent
        assert k.store.query("SELECT 1 FROM actions") == []

        await mint(w3, info, "USDC", info.liquidator, 10**7 * 10**6)
        await mint(w3, info, "DAI", info.liquidator, 10**7 * 10**18)
        await mint(w3, info, "WETH", info.liquidator, 10**4 * 10**18)
        await tick(k)  # a top-up is decided and made
        await rpc(w3, "evm_mine", [])
        await tick(k)  # the account is above its trigger
        done = k.store.query("SELECT realized FROM actions WHERE kind = 'top_up' AND result = 'done'")
    finally:
        await k.close()
        await sink.stop()
    got = kinds(sink, account)
    assert got.count("protect_failed") == 1 and got.count("protect_failed_recovered") == 1, got
    assert got.index("protect_failed") < got.index("protect_failed_recovered")
    assert done and await pool_hf(w3, info.pool, account) > hf * 105 // 100  # topped up on chain


async def test_a_top_up_that_reverts_alerts_top_up_failed(devnet, w3, tmp_path):
    info = devnet.info
    account, hf = await weakest_weth_borrower(w3, info)
    await mint(w3, info, "USDC", info.liquidator, 10**7 * 10**6)
    await mint(w3, info, "DAI", info.liquidator, 10**7 * 10**18)
    sink, k = await protecting(devnet, tmp_path, account, hf)
    try:
        held = []
        k.executor.submit = lambda ds, adapter, market: held.extend((d, adapter, market) for d in ds) or 0
        await k.engine.on_block(await k.rpc.block_number())
        (d, adapter, market), = [h for h in held if isinstance(h[0], TopUp)]
        # the wallet is emptied between the decision and the send: the repay reverts
        await rpc(w3, "anvil_impersonateAccount", [info.liquidator])
        for symbol in ("USDC", "DAI"):
            token = info.tokens[symbol]
            await send(w3, info.liquidator, token, call_data("transfer(address,uint256)", addr_arg(info.deployer),
                                                             uint_arg(await balance(w3, token, info.liquidator))))
        r = await k.executor._run(d, adapter, market, {f"{d.market}:{d.account}"})
        await k.notifications.deliver_due(time.time() + 1)
        rows = k.store.query("SELECT result FROM actions WHERE kind = 'top_up'")
    finally:
        await k.close()
        await sink.stop()
    assert r.result == "failed" and rows == [("failed",)]
    assert await pool_hf(w3, info.pool, account) < hf * 105 // 100  # still below its trigger
    assert kinds(sink, account).count("top_up_failed") == 1, kinds(sink, account)
