"""NonceManager and TxManager's send paths against a scripted node (no chain needed):
journal-before-broadcast, nonce resync, nonce given back, unconfirmed broadcast, timeout,
replacement limits, dry_run touching nothing."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3

import pytest
from eth_abi import encode

from keeper.config import Secret
from keeper.errors import ExecutionError, SimulationReverted, TxTimeout
from keeper.executors import GWEI, ExecutorConfig, TxRequest
from keeper.executors.guard import AllowList
from keeper.executors.tx import NonceManager, build_tx_manager
from keeper.store import Store
from tests.unit.test_tx_journal import KEY, TOKEN, FakeNode

APPROVE = bytes.fromhex("095ea7b3") + bytes(64)


@pytest.fixture
def node() -> FakeNode:
    return FakeNode(nonce=7)


@pytest.fixture
def make(node, tmp_path):
    def make(mode="live", hook=None, **cfg):
        config = ExecutorConfig.model_validate({"poll_interval_s": "0.001", "receipt_timeout_s": 5, **cfg})
        return build_tx_manager(config, mode=mode, private_key=Secret(KEY), rpc=node.rpc(),
                                store=Store(tmp_path / "k.sqlite"), hook=hook,
                                allow=AllowList.of([(TOKEN, "approve(address,uint256)")]))
    return make


def req(key: str) -> TxRequest:
    return TxRequest(to=TOKEN, data=APPROVE, purpose="approve", action_key=key, max_cost_wei=10**17)


async def test_nonce_manager_take_give_back_reset(node):
    nm = NonceManager(node.rpc(), "0x" + "00" * 20)
    assert [await nm.take(), await nm.take()] == [7, 8]
    nm.give_back(8)
    assert await nm.take() == 8  # reused
    await nm.take()  # 9
    nm.give_back(8)  # not the top one: resync from the node next time
    node.nonce = 20
    assert await nm.take() == 20
    nm.reset()
    node.nonce = 30
    assert await nm.take() == 30


async def test_row_is_committed_before_the_broadcast(make, node, tmp_path):
    seen = []

    def hook(stage, row):
        if stage == "journaled":  # another connection sees it: it is committed
            other = sqlite3.connect(tmp_path / "k.sqlite")
            seen.append((other.execute("SELECT state FROM tx_journal WHERE hash = ?", (row.hash,)).fetchall(),
                         list(node.accepted)))
            other.close()

    out = await make(hook=hook).send(req("a"))
    assert seen == [([("signed",)], [])]  # journaled, and the node had nothing yet
    assert out.ok and out.nonce == 7


async def test_nonce_too_low_resyncs_and_signs_anew(make, node):
    m = make()
    assert await m.nonces.take() == 7
    m.nonces.give_back(7)
    node.use_nonce_elsewhere()  # nonce 7 went to someone else meanwhile
    out = await m.send(req("a"))
    assert out.nonce == 8
    assert [(r.nonce, r.state) for r in m.journal.rows("a")] == [(7, "failed"), (8, "mined")]


async def test_refused_tx_gives_its_nonce_back(make, node):
    m = make()
    node.refusals = ["insufficient funds for gas * price + value"]
    with pytest.raises(ExecutionError, match="insufficient funds"):
        await m.send(req("a"))
    assert not m.already_done("a")  # nothing was sent: the action may be tried again
    out = await m.send(req("b"))
    assert out.nonce == 7  # the refused tx's nonce, reused
    assert (await m.send(req("a"))).nonce == 8


async def test_unconfirmed_broadcast_is_retried_with_the_same_raw_tx(make, node):
    m = make()
    node.transport_failures = 1
    out = await m.send(req("a"))
    (row,) = m.journal.rows("a")
    assert out.ok and row.hash == out.hash and node.accepted == [row.raw_tx]


async def test_timeout_leaves_the_row_open_for_reconcile(make, node):
    node.automine = False
    m = make(receipt_timeout_s="0.05")
    with pytest.raises(TxTimeout, match="not mined within"):
        await m.send(req("a"))
    assert [r.state for r in m.journal.rows("a")] == ["sent"] and m.already_done("a")
    node.mine()
    outcomes = await m.reconcile()
    assert [o.status for o in outcomes] == ["mined"]


async def test_replacements_stop_at_max_replacements(make, node):
    node.automine = False
    m = make(receipt_timeout_s="0.5", replace_after_blocks=1, max_replacements=2)

    async def blocks():
        while True:
            node.block += 1
            node.pool.clear()  # the node drops everything: nothing is ever mined
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(blocks())
    try:
        with pytest.raises(TxTimeout):
            await m.send(req("a"))
    finally:
        ticker.cancel()
    rows = m.journal.rows("a")
    assert [r.attempt for r in rows] == [0, 1, 2] and {r.nonce for r in rows} == {7}
    for a, b in itertools.pairwise(rows):
        assert b.max_fee_per_gas * 8 >= a.max_fee_per_gas * 9
        assert b.priority_fee_per_gas * 8 >= a.priority_fee_per_gas * 9


async def test_dry_run_never_takes_a_nonce_or_broadcasts(make, node):
    out = await make(mode="dry_run").send(req("a"))
    # 2 * the next block's base fee bound (1 gwei latest + 12.5%) + the 1 gwei tip
    assert out.dry_run and out.gas_limit == 75_000 and out.max_fee_per_gas == 2 * (GWEI * 9 // 8) + GWEI
    assert "eth_sendRawTransaction" not in node.methods and "eth_getTransactionCount" not in node.methods


async def test_simulation_revert_decoded(make, node):
    node.revert = bytes.fromhex("08c379a0") + encode(["string"], ["45"])
    with pytest.raises(SimulationReverted, match="Aave error 45 HEALTH_FACTOR_NOT_BELOW_THRESHOLD"):
        await make().send(req("a"))
    assert "eth_sendRawTransaction" not in node.methods


def test_the_burst_defers_a_liquidation_whose_plan_cannot_have_seen_the_first():
    """keeper.executors.burst: an account's next liquidation goes only when the previous one's
    receipt is in a block at or before the new decision's block."""
    from types import SimpleNamespace

    from keeper.executors.burst import Burst

    burst = Burst(SimpleNamespace())
    item = SimpleNamespace(slots={"m:0xa"}, d=SimpleNamespace(block=10))
    where = {"m:0xa": 0}
    mined_at = lambda n: [{"result": {"blockNumber": hex(n)}}]  # noqa: E731
    assert burst._deferred(item, where, [{"result": None}])  # not mined yet
    assert burst._deferred(item, where, mined_at(11))  # mined after the decision's block
    assert not burst._deferred(item, where, mined_at(10))
    assert not burst._deferred(item, where, mined_at(9))
    assert not burst._deferred(item, {}, [])  # nothing unconfirmed for the account
