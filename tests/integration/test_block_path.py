"""The block path's cuts (issue 10, bench/latency.py) on the devnet: fees from the pushed head
equal what the node answers; a burst with a pushed head reads no header; the local nonce
recovers from a "nonce too low" refusal by asking the node once; the decision's reads started
at ``block.seen`` equal the reads made after the tick; a crash seen by ``on_block`` is decided
before its transitions are logged, and every position is still recorded as before."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from keeper.chain.coalesce import together
from keeper.chain.erc20 import balances
from keeper.chain.headbook import HeadBook
from keeper.chain.heads import HeadSubscription
from keeper.devnet.rpc import rpc
from keeper.executors.fees import next_base_fee, next_base_fee_bound
from keeper.model import Status
from tests.integration.test_approvals import _build, _nonce
from tests.integration.test_burst import _crash, _until, decided
from tests.integration.test_heads import wait_for, ws_url

async def _block(w3, tag: str) -> dict:
    return await rpc(w3, "eth_getBlockByNumber", [tag, False])


async def test_fees_from_the_pushed_head_equal_the_nodes(devnet, w3, tmp_path):
    """Blocks below, at and above the gas target: the next base fee computed from the head
    equals the node's pending block's, and the decision's gas price its ``eth_gasPrice``.
    The heads come over anvil's own WebSocket (``newHeads``), as ``keeper run`` gets them."""
    spare = devnet.info.spare[0]
    k = await _build(devnet, tmp_path, "live")
    stop, gas_limit = asyncio.Event(), None
    sub = HeadSubscription(ws_url(devnet), lambda n: None, book=k.rpc.heads)
    task = asyncio.create_task(sub.run(stop))
    try:
        assert await wait_for(sub.connected.is_set)
        gas_limit = int((await _block(w3, "latest"))["gasLimit"], 16)  # put back after
        await rpc(w3, "evm_setAutomine", [False])
        await rpc(w3, "evm_setBlockGasLimit", [hex(100_000)])  # target 50,000: 21,000 per transfer
        await rpc(w3, "evm_mine", [])
        seen = []
        for transfers in (0, 1, 2, 3, 4, 0):
            for _ in range(transfers):
                await rpc(w3, "eth_sendTransaction", [{"from": spare, "to": spare, "value": "0x1", "gas": hex(21_000)}])
            await rpc(w3, "evm_mine", [])
            latest = await _block(w3, "latest")
            n = int(latest["number"], 16)
            assert await wait_for(lambda n=n: k.rpc.heads.at(n) is not None), f"head {n} not pushed"
            h = k.rpc.heads.head
            assert h.base_fee == int(latest["baseFeePerGas"], 16) and h.gas_used == int(latest["gasUsed"], 16)
            assert next_base_fee(h.base_fee, h.gas_used, h.gas_limit) == int((await _block(w3, "pending"))["baseFeePerGas"], 16)
            assert await k.engine.responder._gas_price() == int(await rpc(w3, "eth_gasPrice", []), 16)
            seen.append((h.gas_used > h.gas_limit // 2) - (h.gas_used < h.gas_limit // 2))
        assert {-1, 1} <= set(seen)  # the base fee fell and rose along the way
    finally:
        stop.set()
        await task
        if gas_limit is not None:
            await rpc(w3, "evm_setBlockGasLimit", [hex(gas_limit)])
        await rpc(w3, "evm_setAutomine", [True])
        await k.close()


async def test_a_burst_with_a_pushed_head_reads_no_header_and_prices_the_same(devnet, w3, tmp_path):
    info = devnet.info
    due = await _crash(w3, info)
    assert len(due) >= 3
    k = await _build(devnet, tmp_path, "live")
    try:
        w, _, batch = await decided(k)
        burst = k.executor.burst
        latest, pending = await _block(w3, "latest"), await _block(w3, "pending")
        expected = next_base_fee_bound(int(latest["baseFeePerGas"], 16), int(pending["baseFeePerGas"], 16))
        k.rpc.heads.note(latest)  # as newHeads announced it
        asked: list[list[str]] = []
        batch_raw = k.rpc.batch_raw

        async def recording(calls, *a, **kw):
            asked.append([m for m, _ in calls])
            return await batch_raw(calls, *a, **kw)
        k.rpc.batch_raw = recording
        await rpc(w3, "evm_setAutomine", [False])
        before = await _nonce(w3, info.liquidator)
        with capture_logs() as logs:
            await burst.run(batch, w.adapter, w.market)
        await rpc(w3, "evm_mine", [])
        await k.executor.drain()
    finally:
        await rpc(w3, "evm_setAutomine", [True])
        await k.close()
    assert asked[0] == ["eth_simulateV1"]  # the burst's one batch: no header, the nonce known
    sent = [e for e in logs if e["event"] == "tx.sent"]
    assert len(sent) == len(due) and {e["base_fee"] for e in sent} == {expected}
    assert await _nonce(w3, info.liquidator) == before + len(due)


async def test_a_nonce_too_low_is_refused_then_the_next_burst_asks_the_node(devnet, w3, tmp_path):
    """The nonce is kept locally (no read per burst); a refusal resets it, and the next burst
    reads it from the node once and sends."""
    info = devnet.info
    due = await _crash(w3, info)
    k = await _build(devnet, tmp_path, "live")
    try:
        used = await _nonce(w3, info.liquidator)
        assert used > 0  # the start-up approvals used some
        k.executor.tx.nonces.reset()
        k.executor.tx.nonces.seed(used - 1)  # stale: as if another process had sent one
        await _scanned(k)

        async def settled() -> bool:
            return not k.executor.in_flight and not k.executor.tasks
        await _until(settled, "the first burst settled")
        rows = k.store.query("SELECT nonce, state, error FROM tx_journal WHERE action_key LIKE 'liq:%'", ())
        refused = [r for r in rows if r[1] == "failed"]
        assert len(refused) == 1 and refused[0][0] == used - 1 and "nonce too low" in refused[0][2].lower()
        assert not k.executor.tx.nonces.known  # reset: the next send asks the node
        (refused_key,) = k.store.query("SELECT action_key FROM tx_journal WHERE state = 'failed'", ())[0]
        account = refused_key.split(":")[2]
        assert _done(k) == {b for b in due if b != account}  # the others went out with the next nonces
        await k.engine.full_scan(await k.rpc.block_number())  # the next tick decides it again
        await _until(settled, "the second burst settled")
        assert k.executor.tx.nonces.known
        assert account in _done(k)
    finally:
        await k.executor.drain()
        await k.close()


async def _scanned(k) -> int:
    """Discovery and a full scan at the head (decisions go to the executor). Returns the head."""
    head = await k.rpc.block_number()
    await k.engine.index(head)
    await k.engine.full_scan(head)
    return head


def _done(k) -> set[str]:
    return {r[0] for r in k.store.query("SELECT account FROM actions WHERE kind = 'liquidate' AND result = 'done'", ())}


async def test_the_reads_started_at_block_seen_equal_the_reads_after(devnet, w3, tmp_path):
    info = devnet.info
    k = await _build(devnet, tmp_path, "live")
    try:
        head = await _scanned(k)
        w, r = k.engine.watches[0], k.engine.responder
        me, tokens = k.executor.tx.address, list(w.adapter.spend_tokens(w.market))
        r.prefetch(head, k.engine.watches)
        started = r._prefetched[2]
        assert await r._wallet(tokens, me, head) == await balances(k.engine.mc, tokens, me, head)
        assert started.done()  # the prefetched read was the one used
        assert await r._wallet(tokens[:1], me, head) == {tokens[0]: (await balances(k.engine.mc, tokens, me, head))[tokens[0]]}
        r.prefetch(head, k.engine.watches)
        assert r._prefetched[2] is started  # one read per block, whatever the number of watches
        await rpc(w3, "evm_mine", [])  # another block: never the old block's balances
        assert await r._wallet(tokens, me, head + 1) == await balances(k.engine.mc, tokens, me, head + 1)
        assert info.liquidator.lower() == me.lower()
    finally:
        await k.close()


async def test_a_crash_is_decided_before_its_transitions_are_logged_and_all_are_recorded(devnet, w3, tmp_path):
    info = devnet.info
    k = await _build(devnet, tmp_path, "live")
    try:
        await _scanned(k)
        submitted: list[int] = []
        k.executor.submit = lambda decisions, adapter, market: submitted.append(len(decisions)) or 0
        await _crash(w3, info)
        block = await k.rpc.block_number()
        with capture_logs() as logs:
            await k.engine.on_block(block)
        events = [e["event"] for e in logs]
        assert submitted and "position.flagged" in events
        assert events.index("decision.made") < events.index("position.flagged")  # decided first
        w = k.engine.watches[0]
        flagged = {e["account"] for e in logs if e["event"] == "position.flagged" and e["status"] == "liquidatable"}
        for a in flagged:  # recorded after the decision: status, drop search and the store, as before
            p = w.positions[a]
            assert p.status == Status.LIQUIDATABLE and p.block == block
        stored = k.store.statuses(w.key)
        assert flagged and all(stored[a].status == Status.LIQUIDATABLE and stored[a].block == block for a in flagged)
        assert all(w.positions[a].drop_to_liquidation_bps is not None for a in flagged)
    finally:
        await k.close()


async def test_reads_started_together_go_in_one_batch_with_the_same_answers(engine, devnet):
    """keeper.chain.coalesce: the market, its logs, the wallet's balances and a failing
    request, started together, cost fewer HTTP requests and answer exactly as alone; the
    failing one's error stays its own."""
    head = await engine.rpc.block_number()
    await engine.index(head)
    await engine.full_scan(head)
    w, rpc = engine.watches[0], engine.rpc
    src, topics = w.adapter.event_sources(w.market), [w.adapter.event_topics()]
    tokens, me = list(w.adapter.spend_tokens(w.market)), devnet.info.liquidator

    def reads():
        return (engine.load(w, head), engine.logs.fetch(src, topics, 1, head),
                balances(engine.mc, tokens, me, head), rpc.raw("eth_noSuchMethod", []))
    h0 = rpc.counter.http_requests
    alone = [await r for r in reads()]
    h1 = rpc.counter.http_requests
    with together() as batcher:
        started = asyncio.gather(*reads())
    coalesced = await started
    h2 = rpc.counter.http_requests
    assert coalesced[0] == alone[0] and coalesced[1] == alone[1] and coalesced[2] == alone[2]
    assert "error" in coalesced[3] and coalesced[3]["error"] == alone[3]["error"]
    assert len(alone[1]) > 0  # the devnet's history has the market's events
    assert h2 - h1 < h1 - h0 and batcher.batches == h2 - h1, (h1 - h0, h2 - h1, batcher.batches)
