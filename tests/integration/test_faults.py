"""The fault matrix at the node seam: keeper's ``Rpc`` behind the project's fault-injecting
proxy (tests/faultproxy.py, loopback only) in front of the test anvil.

Each test asserts behaviour: the reads equal what anvil answers directly, a failover
happened (or a retry on one endpoint), the faulty endpoint was taken out, a transaction
was broadcast to every healthy endpoint and mined once, and nothing was sent (the nonce
is unchanged) when no endpoint could take it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from eth_account import Account

from keeper.chain.abi import call_data
from keeper.chain.rpc import Rpc
from keeper.devnet.accounts import SPARE, anvil_account
from keeper.errors import ExecutionError, SourceError
from tests.faultproxy import WRONG_CHAIN_ID, FaultProxy

CHAIN_ID = 31337
FAULTS = ["drop", "http500", "http503", "http429", "garbage", "timeout"]


@pytest_asyncio.fixture(loop_scope="session")
async def proxies(devnet) -> AsyncIterator[tuple[FaultProxy, FaultProxy]]:
    a, b = FaultProxy(devnet.rpc_url), FaultProxy(devnet.rpc_url)
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def two(a: FaultProxy, b: FaultProxy) -> Rpc:
    return Rpc([a.url, b.url], timeout_s=1.0, chain_id=CHAIN_ID)


async def reads(rpc: Rpc, devnet, block: int) -> tuple:
    """A single call, a pinned eth_call, a batch of eth_calls and a balance."""
    usdc, weth = devnet.info.tokens["USDC"], devnet.info.tokens["WETH"]
    supply = call_data("totalSupply()")
    one = await rpc.call(usdc, supply, block)
    batch = await rpc.calls([(usdc, supply), (weth, supply)], block)
    balance = await rpc.request("eth_getBalance", [devnet.info.pool, hex(block)])
    return one, tuple(batch), balance


async def truth(devnet) -> tuple[int, tuple]:
    direct = Rpc(devnet.rpc_url)
    try:
        block = await direct.block_number()
        return block, await reads(direct, devnet, block)
    finally:
        await direct.close()


@pytest.mark.parametrize("fault", FAULTS)
async def test_reads_fail_over_to_the_healthy_endpoint(devnet, proxies, fault):
    a, b = proxies
    a.set(fault)  # until cleared
    block, expected = await truth(devnet)
    rpc = two(a, b)
    try:
        # untried endpoints tie, index 0 goes first: it fails and the same call goes on to b
        assert await reads(rpc, devnet, block) == expected
        first = rpc.endpoints[0]
        assert a.faulted >= 1 and first.errors >= 1
        assert rpc.failovers >= 1
        assert "eth_call" in b.methods
        # the head is asked of every endpoint: the faulty one fails again and rests
        for _ in range(50):  # bounded; a timeout answers in the background
            assert await rpc.block_number() == block
            if first.down:
                break
            await asyncio.sleep(0.1)
        assert first.down
        asked = len(a.methods)
        assert await reads(rpc, devnet, block) == expected
        assert len(a.methods) == asked  # resting: no traffic to it
    finally:
        await rpc.close()


@pytest.mark.parametrize("fault", ["drop", "http503", "http429", "garbage"])
async def test_one_endpoint_retries_a_passing_fault_in_the_same_call(devnet, proxies, fault):
    a, _ = proxies
    block, expected = await truth(devnet)
    rpc = Rpc(a.url, timeout_s=1.0, chain_id=CHAIN_ID)
    try:
        await rpc.block_number()
        a.set(fault, times=2)
        assert await reads(rpc, devnet, block) == expected
        assert a.faulted == 2
    finally:
        await rpc.close()


async def test_a_lasting_fault_is_a_source_error_with_the_http_status_and_no_url(devnet, proxies):
    a, _ = proxies
    rpc = Rpc(a.url + "/v2/SeCrEtApIkEy0123456789", timeout_s=1.0, chain_id=CHAIN_ID)
    try:
        a.set("http503")
        with pytest.raises(SourceError) as e:
            await rpc.block_number()
        assert "HTTP 503" in str(e.value)
        assert "SeCrEtApIkEy" not in str(e.value) and str(a.port) not in str(e.value)
        assert rpc.endpoints[0].down
        # resting: the next call fails at once, without traffic
        asked = len(a.methods)
        with pytest.raises(SourceError):
            await rpc.block_number()
        assert len(a.methods) == asked
    finally:
        await rpc.close()


async def test_an_endpoint_on_the_wrong_chain_serves_nothing(devnet, proxies):
    a, b = proxies
    a.set("wrong_chain")
    block, expected = await truth(devnet)
    rpc = two(a, b)
    try:
        ids = {ep.index: got for ep, got, _ in await rpc.check_chain_ids()}
        assert ids == {0: WRONG_CHAIN_ID, 1: CHAIN_ID}
        assert await rpc.block_number() == block
        assert await reads(rpc, devnet, block) == expected
        assert rpc.endpoints[0].wrong_chain == WRONG_CHAIN_ID
        assert not {"eth_call", "eth_getBalance", "eth_blockNumber"} & set(a.methods)
    finally:
        await rpc.close()
    alone = Rpc(a.url, timeout_s=1.0, chain_id=CHAIN_ID)
    try:
        with pytest.raises(SourceError) as e:
            await alone.block_number()
        assert f"on chain {WRONG_CHAIN_ID}, expected {CHAIN_ID}" in str(e.value)
    finally:
        await alone.close()


async def test_a_lagging_endpoint_is_not_read(devnet, proxies, w3):
    a, b = proxies
    await w3.provider.make_request("anvil_mine", [hex(12)])  # a head above the lag
    a.lag_blocks = 10
    a.set("lag")
    rpc = two(a, b)
    try:
        block, expected = await truth(devnet)
        assert await rpc.block_number() == block
        assert rpc.endpoints[0].lag(block) == 10
        asked = len(a.methods)
        assert await reads(rpc, devnet, block) == expected
        assert len(a.methods) == asked  # everything went to the endpoint at the head
    finally:
        await rpc.close()


async def test_endpoint_down_then_back(devnet, proxies):
    a, b = proxies
    block, expected = await truth(devnet)
    rpc = two(a, b)
    first = rpc.endpoints[0]
    try:
        await a.stop()  # the first choice (untried endpoints tie; index 0 goes first) is down
        for _ in range(4):
            assert await reads(rpc, devnet, block) == expected
            assert await rpc.block_number() >= block  # the head is asked of every endpoint
        assert first.errors >= 1 and rpc.failovers >= 1
        assert first.down
        await a.start()
        for _ in range(100):  # bounded: the rest is at most BACKOFF_MAX_S
            await asyncio.sleep(0.1)
            await rpc.block_number()
            if not first.down:
                break
        assert not first.down and first.checked
        assert "eth_chainId" in a.methods  # reconnected: the chain id was checked again
    finally:
        await rpc.close()


def _transfer(devnet, nonce: int, base_fee: int) -> str:
    me = anvil_account(SPARE[2])
    tx = {"to": anvil_account(SPARE[0]).address, "value": 1, "gas": 21_000, "nonce": nonce, "chainId": CHAIN_ID,
          "maxFeePerGas": 2 * base_fee + 10**9, "maxPriorityFeePerGas": 10**9, "type": 2}
    return "0x" + Account.sign_transaction(tx, me.private_key).raw_transaction.hex()


async def _nonce(rpc: Rpc) -> int:
    me = anvil_account(SPARE[2]).address
    return int(await rpc.request("eth_getTransactionCount", [me, "latest"]), 16)


async def _mined(rpc: Rpc, tx_hash: str) -> dict:
    """The receipt, waited for (bounded): automine can lag a send when anvil's history is long."""
    for _ in range(200):
        receipt = await rpc.request("eth_getTransactionReceipt", [tx_hash])
        if receipt is not None:
            return receipt
        await asyncio.sleep(0.025)
    raise AssertionError(f"{tx_hash} not mined")


async def _next(rpc: Rpc) -> tuple[int, int]:
    """(the sender's next nonce, the base fee)."""
    return await _nonce(rpc), int((await rpc.block("latest"))["baseFeePerGas"], 16)


async def test_a_transaction_is_broadcast_to_every_healthy_endpoint_and_mined_once(devnet, proxies):
    a, b = proxies
    rpc = two(a, b)
    try:
        nonce, base_fee = await _next(rpc)
        raw = _transfer(devnet, nonce, base_fee)
        answer = await rpc.raw("eth_sendRawTransaction", [raw])
        assert "result" in answer
        for _ in range(100):  # bounded: the first acceptance returns, the other finishes after
            if a.sent == [raw] and b.sent == [raw]:
                break
            await asyncio.sleep(0.02)
        assert a.sent == [raw] and b.sent == [raw]
        receipt = await _mined(rpc, answer["result"])
        assert int(receipt["status"], 16) == 1
        assert await _nonce(rpc) == nonce + 1
        # one endpoint failing: the other takes it
        a.set("http500")
        raw2 = _transfer(devnet, nonce + 1, base_fee)
        answer2 = await rpc.raw("eth_sendRawTransaction", [raw2])
        assert "result" in answer2
        assert raw2 not in a.sent and b.sent[-1] == raw2
        await _mined(rpc, answer2["result"])
        assert await _nonce(rpc) == nonce + 2
        # every endpoint failing: unknown whether it arrived -> SourceError; nothing was sent
        b.set("http503")
        with pytest.raises(SourceError):
            await rpc.raw("eth_sendRawTransaction", [_transfer(devnet, nonce + 2, base_fee)])
        a.set(None)
        b.set(None)
        assert await _nonce(rpc) == nonce + 2
    finally:
        await rpc.close()


async def test_requests_share_a_kept_alive_connection_and_a_closed_one_is_read_again(devnet, proxies):
    """keeper.chain.transport: one TCP connection for many requests (web3's own session opens
    one per request); a pooled connection the node closed costs a read one resend, no error;
    a send on it is not resent (its copy may be mined): unknown, as before, and the same
    bytes sent again are mined once."""
    a, _ = proxies
    block, expected = await truth(devnet)
    rpc = Rpc(a.url, timeout_s=1.0, chain_id=CHAIN_ID)
    try:
        for _ in range(10):
            assert await reads(rpc, devnet, block) == expected
        assert len(a.peers) == 1 and rpc.counter.http_requests >= 30
        a.set("drop", times=1)  # the connection is closed under the next request
        assert await reads(rpc, devnet, block) == expected
        assert (a.faulted, rpc.counter.resent, rpc.endpoints[0].errors) == (1, 1, 0)
        assert len(a.peers) == 2
        nonce, base_fee = await _next(rpc)
        raw = _transfer(devnet, nonce, base_fee)
        a.set("drop", times=1)
        with pytest.raises(SourceError, match="connection failed"):
            await rpc.raw("eth_sendRawTransaction", [raw])
        assert a.sent == [] and rpc.counter.resent == 1 and await _nonce(rpc) == nonce
        answer = await rpc.raw("eth_sendRawTransaction", [raw])
        assert int((await _mined(rpc, answer["result"]))["status"], 16) == 1
        assert a.sent == [raw] and await _nonce(rpc) == nonce + 1
    finally:
        await rpc.close()


async def test_a_send_does_not_wait_for_a_hanging_endpoint(devnet, proxies):
    a, b = proxies
    rpc = two(a, b)
    try:
        nonce, base_fee = await _next(rpc)
        a.set("timeout")
        answer = await rpc.raw("eth_sendRawTransaction", [_transfer(devnet, nonce, base_fee)])
        assert "result" in answer
        assert rpc.endpoints[0].errors == 0  # returned on b's acceptance, a still pending
        receipt = await _mined(rpc, answer["result"])
        assert int(receipt["status"], 16) == 1
        for _ in range(100):  # bounded: a's timeout is recorded in the background
            if rpc.endpoints[0].errors:
                break
            await asyncio.sleep(0.05)
        assert rpc.endpoints[0].errors >= 1 and rpc.endpoints[0].last_error == "timeout"
    finally:
        await rpc.close()


async def test_killed_mid_send_over_two_endpoints_then_restarted_without_the_first(devnet, proxies, tmp_path):
    """kill -9 right after the broadcast to both endpoints; the restart finds the first one
    down: reconcile settles the same signed transaction through the second, nothing is sent
    twice and the action is done."""
    from tests.integration.test_tx_crash import allowance, approve, crash_send, manager, nonce

    a, b = proxies
    me, pool, db = devnet.info.liquidator, devnet.info.pool, tmp_path / "k.sqlite"
    token = next(iter(devnet.info.tokens.values()))
    rpc = two(a, b)
    try:
        n0 = await nonce(rpc, me)
        await crash_send(devnet, db, token, pool, 555, "crash:two", "broadcast", urls=f"{a.url},{b.url}")
        assert await nonce(rpc, me) == n0 + 1  # sent before the kill
        await a.stop()  # the restart finds the first endpoint down
        m = manager(devnet, rpc, db, token)
        (row,) = m.journal.rows("crash:two")
        outcomes = await m.reconcile()
        assert [(o.hash, o.status, o.nonce) for o in outcomes] == [(row.hash, "mined", n0)]
        with pytest.raises(ExecutionError, match="already sent"):
            await m.send(approve(token, pool, 555, "crash:two"))
        assert await nonce(rpc, me) == n0 + 1 and await allowance(rpc, token, me, pool) == 555
        assert len(set(a.sent + b.sent)) == 1  # one signed transaction, never signed anew
    finally:
        await rpc.close()


async def test_endpoints_from_the_environment_are_never_shown(devnet, proxies, tmp_path):
    """KEEPER_RPC_URLS with API keys in the paths, the first endpoint down: doctor passes
    on the second, `keeper run` scans, and neither prints a key or a URL."""
    import os
    import signal
    import sys

    a, b = proxies
    await a.stop()
    secrets = ("SeCrEtKeYaaaa0123456789", "SeCrEtKeYbbbb0123456789")
    env = {**os.environ, "KEEPER_RPC_URLS": f"{a.url}/v2/{secrets[0]}, {b.url}/v2/{secrets[1]}"}
    env.pop("KEEPER_RPC_URL", None)
    path = tmp_path / "keeper.toml"
    path.write_text(devnet.config_path.read_text() + f'\n[store]\npath = "{tmp_path / "k.sqlite"}"\n')

    async def keeper(*args: str, stop_on: str | None = None) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "keeper", *args, "-c", str(path),
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT, env=env)
        out = []
        try:
            while line := await asyncio.wait_for(proc.stdout.readline(), 60):
                out.append(line.decode())
                if stop_on and stop_on in out[-1]:
                    proc.send_signal(signal.SIGTERM)
        finally:
            if proc.returncode is None:
                await asyncio.wait_for(proc.wait(), 60)
        return proc.returncode, "".join(out)

    code, text = await keeper("doctor")
    assert code == 0, text
    assert "endpoint 0:127.0.0.1 does not answer now" in text and "endpoint 1:127.0.0.1 on chain 31337" in text
    code, run_text = await keeper("run", stop_on='"scan.done"')
    assert code == 0 and '"scan.done"' in run_text, run_text[-2000:]
    for s in secrets:
        assert s not in text + run_text
    assert "/v2/" not in text + run_text
