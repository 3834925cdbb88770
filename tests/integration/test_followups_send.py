"""Follow-up liquidations sent for real: an account that needs two liquidations (a WETH+WBTC /
USDC+DAI borrower at HF 0.90: the first takes one pair) gets both from ONE block tick, in
one burst, and both from ONE backrun of the price update, mined in the same block, the
follow-up's nonce after the first's; each is its own action (``...#2``) with its own journal
row, ``done``."""

from __future__ import annotations

from keeper.chain.abi import call_data, uint_arg, word
from keeper.devnet.api import get_price
from keeper.devnet.rpc import rpc
from keeper.protocols.aave_v3 import encode as enc
from keeper.units import WAD
from tests.integration.test_approvals import _build
from tests.integration.test_backrun import _funded, _ours_follow, _pending_nonce, _running, _until, liquidations
from tests.integration.test_followups import TARGET_HF_BPS, push_to, two_pair_borrower
from tests.integration.test_keeper_actions import pool_hf


def _records(k, user: str) -> tuple[list[tuple], list[tuple]]:
    """The user's ``actions`` rows and the journal rows of those actions, by nonce."""
    actions = k.store.query("SELECT action_key, result FROM actions WHERE kind = 'liquidate' AND account = ? "
                            "ORDER BY action_key", (user,))
    keys = [a[0] for a in actions]
    journal = k.store.query(f"SELECT action_key, nonce, state FROM tx_journal WHERE action_key IN "
                            f"({','.join('?' * len(keys))}) ORDER BY nonce", tuple(keys))
    return actions, journal


def _check(actions, journal, user: str, events: list[dict], block: int) -> None:
    mine = [e for e in events if e["user"] == user]
    assert len(mine) >= 2 and {e["block"] for e in mine} == {block}  # both in one block
    first = actions[0][0]
    assert first.startswith("liq:devnet:") and user in first and "#" not in first
    assert [a[0] for a in actions] == [first] + [f"{first}#{n}" for n in range(2, len(actions) + 1)]
    assert [a[1] for a in actions] == ["done"] * len(mine)
    assert [j[2] for j in journal] == ["mined"] * len(mine)  # one transaction per action
    # each after the one it follows (the burst orders by bid: other accounts' may sit between)
    nonces = [j[1] for j in journal]
    assert nonces == sorted(set(nonces))
    assert [j[0] for j in journal] == [a[0] for a in actions]


async def test_one_tick_sends_both_liquidations_of_an_account_in_one_burst(devnet, w3, tmp_path):
    info = devnet.info
    await _funded(w3, info)
    user = two_pair_borrower(info)
    await push_to(w3, info, user)
    k = await _build(devnet, tmp_path, "live")  # approvals in place at start-up
    try:
        await rpc(w3, "evm_setAutomine", [False])
        start = int(await rpc(w3, "eth_blockNumber", []), 16)
        before = await _pending_nonce(w3, info.liquidator)
        head = await k.rpc.block_number()
        await k.engine.index(head)
        await k.engine.full_scan(head)  # one tick: its decisions go out in one burst

        async def all_sent() -> bool:
            return not k.executor.in_flight and await _pending_nonce(w3, info.liquidator) - before == \
                k.engine.responder.decided
        await _until(all_sent, "every decision of the tick sent")
        assert k.engine.responder.decided >= 2
        await rpc(w3, "evm_mine", [])
        await k.executor.drain()
        actions, journal = _records(k, user)
    finally:
        await rpc(w3, "evm_setAutomine", [True])
        await k.close()
    events = [e for e in await liquidations(w3, info.pool, start + 1) if e["liquidator"] == info.liquidator]
    assert {e["block"] for e in events} == {start + 1}  # every liquidation of the tick in the next block
    _check(actions, journal, user, events, start + 1)
    assert await pool_hf(w3, info.pool, user) >= WAD  # nothing left to liquidate


async def test_one_backrun_sends_both_liquidations_of_an_account_behind_the_update(devnet, w3, tmp_path):
    info = devnet.info
    user = two_pair_borrower(info)
    hf = await pool_hf(w3, info.pool, user)
    async with _running(devnet, w3, tmp_path, "mempool") as (k, _sub):
        start = int(await rpc(w3, "eth_blockNumber", []), 16)
        before = await _pending_nonce(w3, info.liquidator)
        calls = []
        for symbol in ("WETH", "WBTC"):  # pending: the price block is the next one
            new = await get_price(w3, info, symbol) * TARGET_HF_BPS * WAD // (10_000 * hf)
            calls.append({"from": info.deployer, "to": info.feeds[symbol], "gas": hex(200_000),
                          "data": "0x" + call_data("setAnswer(int256)", uint_arg(new)).hex()})
        views = [{"to": info.pool, "data": "0x" + enc.account_data(b).hex()} for b in info.borrowers]
        sim = await rpc(w3, "eth_simulateV1", [{"blockStateCalls": [{"calls": calls + views}]}, "latest"])
        due = [b for b, r in zip(info.borrowers, sim[0]["calls"][len(calls):])
               if word(bytes.fromhex(r["returnData"][2:]), 5) < WAD]  # below 1 once the updates apply
        assert user in due
        updates = [await rpc(w3, "eth_sendTransaction", [c]) for c in calls]

        async def all_sent() -> bool:  # every due account's liquidation and the user's follow-up
            keys = [r[0] for r in k.store.query("SELECT action_key FROM tx_journal WHERE action_key LIKE 'liq:%'", ())]
            return (all(any(b in key for key in keys) for b in due) and sum(user in key for key in keys) >= 2
                    and await _pending_nonce(w3, info.liquidator) - before == len(keys) and not _sub.backrunner.tasks)
        await _until(all_sent, "the backrun's sends")
        sent = await _pending_nonce(w3, info.liquidator) - before
        await rpc(w3, "evm_mine", [])
        await k.executor.drain()
        actions, journal = _records(k, user)
    events = [e for e in await liquidations(w3, info.pool, start + 1) if e["liquidator"] == info.liquidator]
    assert {e["block"] for e in events} == {start + 1}  # the update's own block
    block = await rpc(w3, "eth_getBlockByNumber", [hex(start + 1), True])
    assert len(_ours_follow(block, updates, info.liquidator)) == sent == len(events)
    _check(actions, journal, user, events, start + 1)
    assert await pool_hf(w3, info.pool, user) >= WAD
