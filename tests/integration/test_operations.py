"""`keeper run` as an operator runs it: two endpoints behind the fault-injecting proxy, a block
every second, /metrics and /healthz on loopback. The first endpoint is taken down after the
start, prices crash 35 % (30 % puts only one of the 30 devnet borrowers under 1), and keeper still liquidates every position the crash put under 1,
each by its own transactions with no nonce reused, /healthz answers 200 throughout, the
metrics show the endpoint down, and SIGTERM ends it cleanly: no transaction event after
``keeper.stopped``, no traceback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time

import aiohttp
from eth_utils import to_checksum_address

from keeper.devnet.api import apply_price_change, get_price, set_price
from keeper.devnet.rpc import rpc
from keeper.units import WAD
from tests.faultproxy import FaultProxy
from tests.integration.test_keeper_actions import LIQUIDATOR_KEY, liquidations, mint, pool_hf
from tests.notify_servers import HttpSink


async def _mine_every_second(w3, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await rpc(w3, "evm_mine", [])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def _read_lines(stream: asyncio.StreamReader, out: list[str]) -> None:
    while line := await stream.readline():
        out.append(line.decode(errors="replace"))


def _events(lines: list[str]) -> list[dict]:
    return [json.loads(x) for x in lines if x.startswith("{")]


async def _wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.25)
    return False


def _operator_kinds(sink: HttpSink) -> list[str]:
    bodies = [json.loads(r.body) for r in sink.accepted("/hook")]
    return [b["kind"] for b in bodies if b["protocol"] == "keeper"]


def _sample(text: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head == (f"{name}{{{want}}}" if want else name):
            return float(value)
    return None


async def test_failover_crash_metrics_health_and_sigterm(devnet, w3, tmp_path):
    info = devnet.info
    for symbol, amount in (("USDC", 10**7 * 10**6), ("DAI", 10**7 * 10**18), ("WETH", 10**4 * 10**18),
                           ("WBTC", 500 * 10**8)):
        await mint(w3, info, symbol, info.liquidator, amount)
    a, b = FaultProxy(devnet.rpc_url), FaultProxy(devnet.rpc_url)
    await a.start()
    await b.start()
    sink = HttpSink()
    await sink.start()
    text = devnet.config_path.read_text().replace(f'rpc_url = "{devnet.rpc_url}"',
                                                  f'rpc_urls = ["{a.url}", "{b.url}"]\nrequest_timeout_s = 2\n'
                                                  "block_poll_interval_s = 0.25")
    path = tmp_path / "keeper.toml"
    path.write_text('mode = "live"\n' + text + f'\n[store]\npath = "{tmp_path / "k.sqlite"}"\n'
                    "\n[liquidator]\nenabled = true\n\n[monitor]\nscan_interval_s = 2\nstale_head_s = 10\n"
                    '\n[metrics]\nlisten = "127.0.0.1:0"\nmax_tick_age_s = 10\n'  # the OS picks: logged
                    '\n[executor]\nmin_gas_balance_wei = "20000"\n'  # above the wallet's 10,000 ETH
                    f'\n[[notify]]\nkind = "webhook"\nurl = "{sink.base_url}/hook"\n')
    stop_mining = asyncio.Event()
    miner = asyncio.create_task(_mine_every_second(w3, stop_mining))
    env = {**os.environ, "KEEPER_PRIVATE_KEY": LIQUIDATOR_KEY}
    env.pop("KEEPER_RPC_URL", None)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "keeper", "run", "--config", str(path),
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, env=env)
    lines: list[str] = []
    reader = asyncio.create_task(_read_lines(proc.stdout, lines))
    health: list[int] = []
    http = aiohttp.ClientSession()
    base = ""

    async def healthz() -> int:
        async with http.get(f"{base}/healthz") as r:
            return r.status

    async def metrics() -> str:
        async with http.get(f"{base}/metrics") as r:
            assert r.status == 200
            return await r.text()

    try:
        async def serving() -> bool:
            return any(e["event"] == "metrics.serving" for e in _events(lines))
        assert await _wait_for(serving, 60), "".join(lines)[-3000:]
        base = "http://" + next(e["listen"] for e in _events(lines) if e["event"] == "metrics.serving")

        async def scanned() -> bool:
            return any(e["event"] == "scan.done" for e in _events(lines))
        assert await _wait_for(scanned, 90), "".join(lines)[-3000:]
        health.append(await healthz())
        first = await metrics()
        assert _sample(first, "keeper_head_block") > 0
        assert _sample(first, "keeper_rpc_endpoint_up", endpoint="0:127.0.0.1") == 1

        await a.stop()  # the first endpoint goes down after the start
        start = int(await rpc(w3, "eth_blockNumber", []), 16)
        for symbol in ("WETH", "WBTC"):
            await set_price(w3, info, symbol, apply_price_change(await get_price(w3, info, symbol), "-35%"))
        # keeper may liquidate some before their health factor is read here (its block tick
        # runs between the price moves and these reads): those count with the ones below one
        below_one = {bo for bo in info.borrowers if await pool_hf(w3, info.pool, bo) < WAD}
        below_one |= {e["user"] for e in await liquidations(w3, info.pool, start)
                      if e["liquidator"] == to_checksum_address(info.liquidator)}
        assert len(below_one) >= 3

        async def all_liquidated() -> bool:
            health.append(await healthz())
            ours = [e for e in await liquidations(w3, info.pool, start)
                    if e["liquidator"] == to_checksum_address(info.liquidator)]
            return below_one <= {e["user"] for e in ours}
        assert await _wait_for(all_liquidated, 120), "".join(lines)[-3000:]
        for _ in range(4):  # a few more seconds of blocks: health holds, the endpoint stays down
            await asyncio.sleep(0.5)
            health.append(await healthz())
        after = await metrics()

        await a.start()  # back: it recovers, and the operator hears of it

        async def recovered() -> bool:
            return "endpoint_down_recovered" in _operator_kinds(sink)
        assert await _wait_for(recovered, 60), _operator_kinds(sink)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 90)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await reader
        stop_mining.set()
        await miner
        await http.close()
        await sink.stop()
        await a.close()
        await b.close()

    out = "".join(lines)
    assert health and set(health) == {200}, health
    assert _sample(after, "keeper_rpc_endpoint_up", endpoint="0:127.0.0.1") == 0
    assert _sample(after, "keeper_rpc_errors_total", endpoint="0:127.0.0.1") >= 1
    assert _sample(after, "keeper_rpc_requests_total", endpoint="1:127.0.0.1") > 0
    assert _sample(after, "keeper_transactions", state="mined") >= len(below_one)
    assert (_sample(after, "keeper_tick_duration_seconds_count", job="scan") or 0) >= 1
    assert a.url not in out and b.url not in out  # endpoints are named by index and host only
    # nothing sent twice: every transaction of ours used its own nonce
    ours = [e for e in _events(lines) if e["event"] == "tx.sent"]
    nonces = [e["nonce"] for e in ours if "nonce" in e and e.get("attempt", 0) == 0]
    assert len(nonces) == len(set(nonces))
    # operator alerts: each once, with its recovery
    kinds = _operator_kinds(sink)
    assert kinds.count("gas_low") == 1
    assert kinds.count("endpoint_down") == 1 and kinds.count("endpoint_down_recovered") == 1
    assert kinds.index("endpoint_down") < kinds.index("endpoint_down_recovered")
    assert "all_endpoints_down" not in kinds
    # SIGTERM: stopped last, no traceback
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "CancelledError" not in out
    events = _events(lines)
    names = [e["event"] for e in events]
    assert "keeper.stopped" in names
    stopped = names.index("keeper.stopped")
    assert not [n for n in names[stopped + 1:] if n.startswith(("tx.", "liquidation.", "action."))]
