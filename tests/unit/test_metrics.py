"""keeper.metrics over a real loopback HTTP server: /healthz follows the head and the ticks,
/metrics names endpoints by index and host, never by URL."""

from __future__ import annotations

import time

import aiohttp

from keeper.chain.rpc import Rpc
from keeper.metrics import Metrics

URL = "http://127.0.0.1:9/v2/SeCrEtKeY0123456789abcdef"


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.text()


async def test_healthz_is_503_until_a_fresh_head_and_a_good_tick_then_503_when_stale():
    rpc = Rpc([URL, "http://127.0.0.1:10"])
    m = Metrics(rpc, stale_head_s=5, max_tick_age_s=5)
    bound = await m.serve("127.0.0.1:0")
    try:
        status, body = await get(f"http://{bound}/healthz")
        assert status == 503 and "no head seen yet" in body
        rpc.head, rpc.head_changed_at = 100, time.monotonic()
        m.tick("scan", 0.2, True)
        status, body = await get(f"http://{bound}/healthz")
        assert status == 200, body
        rpc.head_changed_at = time.monotonic() - 6  # the node stopped producing blocks
        status, body = await get(f"http://{bound}/healthz")
        assert status == 503 and "no new block" in body
        rpc.head_changed_at = time.monotonic()
        m.last_tick_ok = time.monotonic() - 6  # ticks keep failing
        m.tick("block", 0.1, False)
        status, body = await get(f"http://{bound}/healthz")
        assert status == 503 and "no successful tick" in body
    finally:
        await m.close()
        await rpc.close()


async def test_metrics_text_has_the_endpoints_without_their_urls():
    rpc = Rpc([URL, "http://127.0.0.1:10"])
    rpc.endpoints[0].failed("HTTP 503", time.monotonic())
    rpc.endpoints[1].succeeded(0.05)
    rpc.failovers = 1
    m = Metrics(rpc)
    m.tick("scan", 0.3, True)
    bound = await m.serve("127.0.0.1:0")
    try:
        status, text = await get(f"http://{bound}/metrics")
    finally:
        await m.close()
        await rpc.close()
    assert status == 200
    assert 'keeper_rpc_errors_total{endpoint="0:127.0.0.1"} 1.0' in text
    assert 'keeper_rpc_latency_seconds_count{endpoint="1:127.0.0.1"} 1.0' in text
    assert "keeper_rpc_failovers_total 1.0" in text
    assert 'keeper_ticks_total{job="scan",result="ok"} 1.0' in text
    assert "SeCrEtKeY" not in text and ":9/" not in text


def test_the_grafana_dashboard_asks_only_for_metrics_keeper_exports():
    import json
    import re
    from pathlib import Path

    from prometheus_client import generate_latest

    rpc = Rpc("http://127.0.0.1:9")
    rpc.head, rpc.head_changed_at = 1, time.monotonic()
    m = Metrics(rpc, gas_address=None)
    m.tick("scan", 0.1, True)
    m.gas_balance_wei = 1
    exported = set(re.findall(r"^(keeper_\w+)", generate_latest(m.registry).decode(), re.M))
    exported |= {"keeper_positions", "keeper_transactions", "keeper_alerts"}  # empty here: no rows
    dashboard = Path(__file__).parents[2] / "config" / "grafana-dashboard.json"
    exprs = [t["expr"] for p in json.loads(dashboard.read_text())["panels"] for t in p["targets"]]
    asked = {name for e in exprs for name in re.findall(r"keeper_\w+", e)}
    assert asked and asked <= exported, asked - exported
