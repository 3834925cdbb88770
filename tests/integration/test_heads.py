"""Pushed heads against anvil's own WebSocket endpoint (same port, ws://): every mined block is
announced in order; a runner fed by it follows the chain with polling turned down to once an
hour; a dead endpoint is retried without raising, and the subscription comes back."""

from __future__ import annotations

import asyncio

from keeper.chain.heads import HeadSubscription
from keeper.chain.rpc import Rpc
from keeper.config import load_config
from keeper.devnet.rpc import rpc
from keeper.engine import Engine
from keeper.runner import Runner
from keeper.store import Store
from tests.notify_servers import free_port


def ws_url(devnet) -> str:
    return devnet.rpc_url.replace("http://", "ws://")


async def wait_for(predicate, tries: int = 500) -> bool:
    """Bounded wait (never a time assertion): poll a condition every 10 ms."""
    for _ in range(tries):
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


async def test_new_heads_arrive_in_order(devnet, w3):
    got: list[int] = []
    sub = HeadSubscription(ws_url(devnet), got.append)
    stop = asyncio.Event()
    task = asyncio.create_task(sub.run(stop))
    try:
        assert await wait_for(sub.connected.is_set)
        start = int(await rpc(w3, "eth_blockNumber", []), 16)
        for _ in range(3):
            await rpc(w3, "evm_mine", [])
        assert await wait_for(lambda: len(got) >= 3)
        assert got[:3] == [start + 1, start + 2, start + 3]
    finally:
        stop.set()
        await task  # returns once stopped: nothing raised


async def test_a_dead_endpoint_is_retried_quietly_and_never_raises():
    sub = HeadSubscription(f"ws://127.0.0.1:{free_port()}", lambda _n: None, retry_s=0.01, open_timeout_s=1)
    stop = asyncio.Event()
    task = asyncio.create_task(sub.run(stop))
    assert await wait_for(lambda: sub.failures >= 3)
    assert not sub.connected.is_set()
    stop.set()
    await task


async def test_runner_follows_pushed_heads_with_polling_almost_off(devnet, w3, tmp_path):
    path = tmp_path / "keeper.toml"
    path.write_text(devnet.config_path.read_text() + f'\n[store]\npath = "{tmp_path / "k.sqlite"}"\n')
    cfg = load_config(path, env={})
    node = Rpc.from_config(cfg.chain)
    store = Store(cfg.store.path)
    runner = Runner(Engine(cfg, node, store), 3600, 3600, 3600)  # the poll job: once an hour
    runner.heads = HeadSubscription(ws_url(devnet), runner.on_head)
    task = asyncio.create_task(runner.run())
    try:
        assert await wait_for(lambda: runner.head >= 0 and runner.heads.connected.is_set(), 2000)
        for _ in range(3):
            await rpc(w3, "evm_mine", [])
        head = int(await rpc(w3, "eth_blockNumber", []), 16)
        assert await wait_for(lambda: runner.head == head, 2000)
        assert runner.heads.heads >= 3
        assert all(w.last_block == head for w in runner.engine.watches)  # the engine applied them
    finally:
        runner.stop.set()
        await task
        store.close()
        await node.close()
