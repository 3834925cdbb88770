"""TxManager on the real devnet: assertions on chain state (nonces, allowances, balances,
receipts, blocks), not on keeper's own log lines (except where logs are the subject)."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
import structlog
from structlog.testing import capture_logs

from keeper import log as keeper_log
from keeper.chain.abi import addr_arg, call_data, uint_arg, word
from keeper.chain.rpc import Rpc
from keeper.config import Secret
from keeper.errors import ExecutionError, SimulationReverted
from keeper.executors import GWEI, ExecutorConfig, TxRequest
from keeper.executors.guard import AllowList
from keeper.protocols.aave_v3.encode import allowed_calls
from keeper.executors.tx import build_tx_manager
from keeper.store import Store

LIQUIDATOR_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
APPROVE = "approve(address,uint256)"
TRANSFER = "transfer(address,uint256)"
APPROVAL_TOPIC = "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925"


@pytest.fixture
async def node(devnet):
    r = Rpc(devnet.rpc_url)
    yield r
    await r.close()


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "k.sqlite")
    yield s
    s.close()


@pytest.fixture
def token(devnet) -> str:
    return devnet.info.tokens["USDC"] if "USDC" in devnet.info.tokens else next(iter(devnet.info.tokens.values()))


@pytest.fixture
def make(devnet, node, store):
    """A TxManager for the devnet liquidator; keyword arguments go to ExecutorConfig."""

    def make(mode="live", allow: AllowList | None = None, **cfg):
        config = ExecutorConfig.model_validate({"poll_interval_s": "0.02", "receipt_timeout_s": 30, **cfg})
        allow = allow if allow is not None else AllowList.of(allowed_calls(devnet.info.pool, devnet.info.tokens.values()))
        return build_tx_manager(config, mode=mode, private_key=Secret(LIQUIDATOR_KEY), rpc=node,
                                store=store, allow=allow)

    return make


def approve_req(token: str, spender: str, amount: int, key: str, max_cost_wei: int = 10**17) -> TxRequest:
    data = call_data(APPROVE, addr_arg(spender), uint_arg(amount))
    return TxRequest(to=token, data=data, purpose=f"approve {amount} for {spender}", action_key=key,
                     max_cost_wei=max_cost_wei)


async def nonce(node: Rpc, who: str, tag: str = "latest") -> int:
    return int(await node.request("eth_getTransactionCount", [who, tag]), 16)


async def allowance(node: Rpc, token: str, owner: str, spender: str) -> int:
    return word(await node.call(token, call_data("allowance(address,address)", addr_arg(owner), addr_arg(spender))))


async def balance(node: Rpc, who: str) -> int:
    return int(await node.request("eth_getBalance", [who, "latest"]), 16)


async def test_approve_is_mined_allowance_on_chain_one_final_journal_row(devnet, node, make, token):
    m = make()
    me, pool = devnet.info.liquidator, devnet.info.pool
    assert m.address == me
    n0, eth0 = await nonce(node, me), await balance(node, me)

    out = await m.send(approve_req(token, pool, 123_456_789, "approve:1"))

    assert out.status == "mined" and out.ok and not out.dry_run
    assert await allowance(node, token, me, pool) == 123_456_789
    assert await nonce(node, me) == n0 + 1 and out.nonce == n0
    receipt = await node.request("eth_getTransactionReceipt", [out.hash])
    assert int(receipt["status"], 16) == 1 and int(receipt["blockNumber"], 16) == out.block
    assert out.cost_wei == out.gas_used * out.effective_gas_price == eth0 - await balance(node, me)
    assert [log["topics"][0] for log in out.logs] == [APPROVAL_TOPIC]
    (row,) = m.journal.rows("approve:1")
    assert (row.state, row.hash, row.nonce, row.cost_wei) == ("mined", out.hash, n0, out.cost_wei)
    assert out.gas_limit > out.gas_used  # estimate + margin
    assert m.already_done("approve:1")


async def test_dry_run_simulates_and_sends_nothing(devnet, node, make, token):
    m = make(mode="dry_run")
    me = devnet.info.liquidator
    n0 = await nonce(node, me, "pending")

    out = await m.send(approve_req(token, devnet.info.pool, 5, "dry:1"))

    assert out.status == "dry_run" and out.dry_run and out.hash is None
    assert out.gas_limit > 21_000 and out.max_fee_per_gas > 0
    assert await nonce(node, me, "pending") == n0
    assert await allowance(node, token, me, devnet.info.pool) == 0
    assert m.journal.rows() == [] and not m.already_done("dry:1")
    # the simulation really runs in dry_run: a reverting call is caught there
    m2 = make(mode="dry_run", allow=AllowList.of([(token, TRANSFER)]))
    data = call_data(TRANSFER, addr_arg(devnet.info.spare[0]), uint_arg(2**255))
    with pytest.raises(SimulationReverted):
        await m2.send(TxRequest(to=token, data=data, purpose="too much", action_key="dry:2", max_cost_wei=10**17))


async def test_reverting_call_raises_simulation_reverted_and_consumes_no_nonce(devnet, node, make, token):
    me = devnet.info.liquidator
    m = make(allow=AllowList.of([(token, TRANSFER)]) | AllowList.of(allowed_calls(devnet.info.pool, [token])))
    n0 = await nonce(node, me, "pending")
    held = word(await node.call(token, call_data("balanceOf(address)", addr_arg(me))))
    data = call_data(TRANSFER, addr_arg(devnet.info.spare[0]), uint_arg(held + 1))
    with pytest.raises(SimulationReverted, match="transfer amount exceeds balance"):
        await m.send(TxRequest(to=token, data=data, purpose="overdraw", action_key="rev:1", max_cost_wei=10**17))
    # an Aave require(): the code is decoded to its name
    supply = call_data("supply(address,uint256,address,uint16)", addr_arg(token), uint_arg(0), addr_arg(me), uint_arg(0))
    with pytest.raises(SimulationReverted, match="Aave error 26 INVALID_AMOUNT"):
        await m.send(TxRequest(to=devnet.info.pool, data=supply, purpose="supply 0", action_key="rev:2",
                               max_cost_wei=10**17))
    assert await nonce(node, me, "pending") == n0
    assert m.journal.rows() == [] and not m.already_done("rev:1")


async def test_allow_list_refusal_names_target_and_selector(devnet, node, make, token):
    m = make()
    n0 = await nonce(node, devnet.info.liquidator, "pending")
    data = call_data(TRANSFER, addr_arg(devnet.info.spare[0]), uint_arg(1))
    with pytest.raises(ExecutionError, match=f"allow-list: {token} selector 0xa9059cbb"):
        await m.send(TxRequest(to=token, data=data, purpose="transfer", action_key="al:1", max_cost_wei=10**17))
    with pytest.raises(ExecutionError, match=f"allow-list: {devnet.info.pool} selector 0x095ea7b3"):
        await m.send(approve_req(devnet.info.pool, token, 1, "al:2"))  # approve on a non-token
    assert await nonce(node, devnet.info.liquidator, "pending") == n0
    assert m.journal.rows() == []


async def test_max_gas_price_refusal(devnet, node, make, token):
    m = make(max_gas_price_gwei="200")
    n0 = await nonce(node, devnet.info.liquidator, "pending")
    before = (await node.block("pending"))["baseFeePerGas"]
    await node.request("anvil_setNextBlockBaseFeePerGas", [hex(300 * GWEI)])
    try:
        with pytest.raises(ExecutionError, match="gas price too high.*max_gas_price_gwei allows at most 200000000000 wei/gas"):
            await m.send(approve_req(token, devnet.info.pool, 1, "gas:1"))
    finally:
        await node.request("anvil_setNextBlockBaseFeePerGas", [before])
    assert await nonce(node, devnet.info.liquidator, "pending") == n0
    assert m.journal.rows() == []


async def test_daily_spend_cap_refuses_the_next_tx(devnet, node, make, token):
    # each cap is set from a dry-run probe of the same tx at the same head (no block mined in
    # between, so the same fees): the base fee moves from block to block, the probe follows it
    probe = await make(mode="dry_run").send(approve_req(token, devnet.info.pool, 1, "cap:probe"))
    m = make(max_spend_per_day_wei=probe.gas_limit * probe.max_fee_per_gas)  # exactly one fits
    first = await m.send(approve_req(token, devnet.info.pool, 1, "cap:1"))
    assert first.ok
    n1 = await nonce(node, devnet.info.liquidator, "pending")
    probe = await make(mode="dry_run").send(approve_req(token, devnet.info.spare[0], 2, "cap:probe2"))
    m = make(max_spend_per_day_wei=m.journal.spent_in_day() + probe.gas_limit * probe.max_fee_per_gas - 1)
    with pytest.raises(ExecutionError, match="daily spend cap"):
        await m.send(approve_req(token, devnet.info.spare[0], 2, "cap:2"))
    assert await nonce(node, devnet.info.liquidator, "pending") == n1
    assert await allowance(node, token, devnet.info.liquidator, devnet.info.spare[0]) == 0


async def test_concurrent_sends_get_distinct_contiguous_nonces(devnet, node, make, token):
    m = make()
    me = devnet.info.liquidator
    n0 = await nonce(node, me)
    spenders = [*devnet.info.borrowers[:10]]
    outs = await asyncio.gather(*(
        m.send(approve_req(token, s, 1000 + i, f"conc:{i}")) for i, s in enumerate(spenders)))
    assert all(o.status == "mined" for o in outs)
    assert sorted(o.nonce for o in outs) == list(range(n0, n0 + 10))
    assert await nonce(node, me) == n0 + 10
    for i, s in enumerate(spenders):
        assert await allowance(node, token, me, s) == 1000 + i


async def test_same_action_key_is_sent_once_even_concurrently(devnet, node, make, token):
    m = make()
    me = devnet.info.liquidator
    n0 = await nonce(node, me)
    results = await asyncio.gather(
        *(m.send(approve_req(token, devnet.info.pool, 7, "once:1")) for _ in range(3)),
        return_exceptions=True)
    assert sum(1 for r in results if not isinstance(r, BaseException) and r.ok) == 1
    assert all("already sent" in str(r) for r in results if isinstance(r, BaseException))
    with pytest.raises(ExecutionError, match="already sent"):
        await m.send(approve_req(token, devnet.info.pool, 7, "once:1"))
    assert await nonce(node, me) == n0 + 1


async def test_replacement_bumps_fees_and_one_tx_of_the_nonce_is_mined(devnet, node, make, token):
    """Automine off; the test mines each block with a base fee just above the first
    attempt's fee cap, so the first attempt can never be mined (anvil even evicts it).
    After replace_after_blocks blocks the manager re-signs the same nonce with fees
    +12.5% and a cap of at least 2 * base fee + tip: that one gets in."""
    me = devnet.info.liquidator
    m = make(replace_after_blocks=2, priority_fee_gwei="1")
    n0, b0 = await nonce(node, me), await node.block_number()
    await node.request("evm_setAutomine", [False])
    task = asyncio.create_task(m.send(approve_req(token, devnet.info.pool, 42, "rep:1")))
    for _ in range(500):
        if [r.state for r in m.journal.rows("rep:1")] == ["sent"]:
            break
        await asyncio.sleep(0.01)
    first = m.journal.rows("rep:1")[0]
    base_fee = first.max_fee_per_gas + 1
    for _ in range(40):
        if task.done():
            break
        await node.request("anvil_setNextBlockBaseFeePerGas", [hex(base_fee)])
        await node.request("evm_mine", [])
        await asyncio.sleep(0.15)
    out = await asyncio.wait_for(task, 10)
    await node.request("evm_setAutomine", [True])

    rows = m.journal.rows("rep:1")
    assert [r.state for r in rows] == ["replaced", "mined"]
    assert out.hash == rows[-1].hash != first.hash and out.nonce == n0
    second = rows[1]
    assert second.max_fee_per_gas >= first.max_fee_per_gas * 9 // 8
    assert second.priority_fee_per_gas >= first.priority_fee_per_gas * 9 // 8
    assert out.block - b0 >= 2  # not replaced before replace_after_blocks blocks
    assert await node.request("eth_getTransactionReceipt", [first.hash]) is None
    assert await nonce(node, me) == n0 + 1
    assert await allowance(node, token, me, devnet.info.pool) == 42
    mine = []
    for b in range(b0 + 1, await node.block_number() + 1):
        blk = await node.request("eth_getBlockByNumber", [hex(b), True])
        mine += [t["hash"] for t in blk["transactions"] if t["from"].lower() == me.lower()
                 and int(t["nonce"], 16) == n0]
    assert mine == [out.hash]
    assert all(r.max_fee_per_gas * r.gas_limit <= r.max_cost_wei for r in rows)


@pytest.fixture
def _restore_logging():
    root = logging.getLogger()
    level = root.level
    yield
    structlog.reset_defaults()
    for h in [h for h in root.handlers if getattr(h, "_keeper_handler", False)]:
        root.removeHandler(h)
    root.setLevel(level)


@pytest.mark.usefixtures("_restore_logging")
async def test_private_key_never_reaches_a_log_line(devnet, make, token):
    hex_key = LIQUIDATOR_KEY[2:]
    # 1. the events themselves, before any redaction: the key is never handed to the logger
    with capture_logs() as events:
        m = make()
        await m.send(approve_req(token, devnet.info.pool, 1, "log:1"))
        with pytest.raises(SimulationReverted):
            await m.send(approve_req(token, "0x" + "00" * 20, 1, "log:2"))  # approve to 0: reverts
    names = {e["event"] for e in events}
    assert {"tx.simulated", "tx.sent", "tx.mined", "tx.refused"} <= names
    assert hex_key.lower() not in repr(events).lower()
    # 2. the JSON lines a pipe receives
    buf = io.StringIO()
    keeper_log.configure_logging(json=True, level="debug", stream=buf)
    m = make()
    await m.send(approve_req(token, devnet.info.spare[1], 2, "log:3"))
    lines = [json.loads(x) for x in buf.getvalue().splitlines() if x.strip()]
    assert [x["event"] for x in lines] == ["tx.simulated", "tx.sent", "tx.mined"]
    text = buf.getvalue().lower()
    assert hex_key.lower() not in text and LIQUIDATOR_KEY.lower() not in text
    assert hex_key not in repr(m.signer) + str(m.signer) + repr(m)
