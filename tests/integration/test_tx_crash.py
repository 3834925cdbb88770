"""Crash safety on the real devnet: a process is SIGKILLed between the journal write and the
broadcast (or right after the broadcast); a fresh TxManager + reconcile() sends the action
at most once, and the action_key is then done for good. Checked on chain: the sender's
nonce and the allowance the action sets."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from keeper.chain.abi import addr_arg, call_data, uint_arg, word
from keeper.chain.rpc import Rpc
from keeper.config import Secret
from keeper.errors import ExecutionError
from keeper.executors import ExecutorConfig, TxRequest
from keeper.executors.guard import AllowList
from keeper.executors.tx import build_tx_manager
from keeper.store import Store

LIQUIDATOR_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
HELPER = Path(__file__).with_name("_crash_sender.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def node(devnet):
    r = Rpc(devnet.rpc_url)
    yield r
    await r.close()


@pytest.fixture
def token(devnet) -> str:
    return next(iter(devnet.info.tokens.values()))


def approve(token: str, spender: str, amount: int, key: str) -> TxRequest:
    data = call_data("approve(address,uint256)", addr_arg(spender), uint_arg(amount))
    return TxRequest(to=token, data=data, purpose="approve", action_key=key, max_cost_wei=10**17)


def manager(devnet, node: Rpc, db: Path, token: str):
    cfg = ExecutorConfig(poll_interval_s=0.02, receipt_timeout_s=20)
    return build_tx_manager(cfg, mode="live", private_key=Secret(LIQUIDATOR_KEY), rpc=node,
                            store=Store(db), allow=AllowList.of([(token, "approve(address,uint256)")]))


async def crash_send(devnet, db: Path, token: str, spender: str, amount: int, key: str, stage: str,
                     urls: str | None = None) -> None:
    """``urls``: the endpoints, comma-separated (default: the devnet's one)."""
    env = {**os.environ, "KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(HELPER), urls or devnet.rpc_url, str(db), token, spender, str(amount), key, stage,
        env=env, cwd=str(ROOT), stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == -9, err.decode()[-2000:]


async def nonce(node: Rpc, who: str) -> int:
    return int(await node.request("eth_getTransactionCount", [who, "latest"]), 16)


async def allowance(node: Rpc, token: str, owner: str, spender: str) -> int:
    return word(await node.call(token, call_data("allowance(address,address)", addr_arg(owner), addr_arg(spender))))


async def test_killed_after_journal_before_send_is_sent_exactly_once(devnet, node, token, tmp_path):
    me, pool, db = devnet.info.liquidator, devnet.info.pool, tmp_path / "k.sqlite"
    n0 = await nonce(node, me)

    await crash_send(devnet, db, token, pool, 777, "crash:1", "journaled")

    assert await nonce(node, me) == n0  # never broadcast
    assert await allowance(node, token, me, pool) == 0
    m = manager(devnet, node, db, token)
    (row,) = m.journal.rows("crash:1")
    assert row.state == "signed" and row.nonce == n0
    assert m.already_done("crash:1")  # journaled = maybe sent: never signed anew

    outcomes = await m.reconcile()

    assert [(o.hash, o.status) for o in outcomes] == [(row.hash, "mined")]  # the SAME signed tx
    assert await nonce(node, me) == n0 + 1
    assert await allowance(node, token, me, pool) == 777
    with pytest.raises(ExecutionError, match="already sent"):
        await m.send(approve(token, pool, 777, "crash:1"))
    assert await m.reconcile() == []  # nothing left open: a second start-up does nothing
    assert await nonce(node, me) == n0 + 1
    assert [r.state for r in m.journal.rows("crash:1")] == ["mined"]
    # the next action of this account takes the next nonce
    out = await m.send(approve(token, devnet.info.spare[0], 1, "crash:next"))
    assert out.nonce == n0 + 1 and await nonce(node, me) == n0 + 2


async def test_killed_after_send_before_journal_update_is_recorded_not_resent(devnet, node, token, tmp_path):
    me, pool, db = devnet.info.liquidator, devnet.info.pool, tmp_path / "k.sqlite"
    n0 = await nonce(node, me)

    await crash_send(devnet, db, token, pool, 555, "crash:2", "broadcast")

    assert await nonce(node, me) == n0 + 1  # it was sent (automine) before the kill
    m = manager(devnet, node, db, token)
    (row,) = m.journal.rows("crash:2")
    assert row.state == "signed"
    outcomes = await m.reconcile()
    assert [(o.hash, o.status, o.nonce) for o in outcomes] == [(row.hash, "mined", n0)]
    assert await nonce(node, me) == n0 + 1 and await allowance(node, token, me, pool) == 555
    assert m.journal.rows("crash:2")[0].state == "mined" and m.already_done("crash:2")


async def test_journaled_tx_whose_nonce_was_used_elsewhere_is_dropped(devnet, node, token, tmp_path):
    """The node never saw the journaled tx and its nonce went to another tx (e.g. the key
    was used by another process): reconcile must not send it, and says it is not done."""
    me, pool, db = devnet.info.liquidator, devnet.info.pool, tmp_path / "k.sqlite"
    n0 = await nonce(node, me)
    await crash_send(devnet, db, token, pool, 999, "crash:3", "journaled")
    other = manager(devnet, node, tmp_path / "other.sqlite", token)  # its own journal
    used = await other.send(approve(token, devnet.info.spare[0], 5, "elsewhere"))
    assert used.nonce == n0

    m = manager(devnet, node, db, token)
    assert await m.reconcile() == []
    assert [r.state for r in m.journal.rows("crash:3")] == ["dropped"]
    assert not m.already_done("crash:3")
    assert await nonce(node, me) == n0 + 1
    assert await allowance(node, token, me, pool) == 0  # the dropped action never happened
