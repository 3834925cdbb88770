"""Operator alerts (keeper.ops_alerts): each condition alerts once when it starts and once when
it ends, on every channel, and a restart (a new outbox on the same SQLite file) neither
repeats an alert nor forgets a recovery."""

from __future__ import annotations

import time
from pathlib import Path

from keeper.chain.rpc import Rpc
from keeper.notify.message import render
from keeper.ops_alerts import OperatorAlerts
from keeper.store import Store
from tests.unit.test_notify_service import build

CHANNELS = ({"kind": "webhook", "url": "http://127.0.0.1:1/a"}, {"kind": "slack", "url": "http://127.0.0.1:1/b"})


async def test_each_condition_once_then_its_recovery_across_a_restart(tmp_path: Path):
    rpc = Rpc(["http://127.0.0.1:9", "http://127.0.0.1:10"])
    first, second = rpc.endpoints
    rpc.head, rpc.head_changed_at = 50, time.monotonic()
    try:
        with Store(tmp_path / "k.sqlite") as store:
            ops = OperatorAlerts(rpc, build(store, *CHANNELS), stale_head_s=30)
            assert await ops.check(now=1000) == []
            first.down, first.last_error = True, "HTTP 503"
            new = await ops.check(now=1001)
            assert sorted(a.kind for a in new) == ["endpoint_down"] and len(new) == 1
            assert ops.notifications.outbox.counts()["pending"] == 2  # one delivery per channel
            assert "endpoint 0:127.0.0.1 is down (HTTP 503)" in render(new[0]).text
            assert await ops.check(now=1002) == []  # still down: said once
            second.wrong_chain = 5
            rpc.head_changed_at = time.monotonic() - 31
            kinds = sorted(a.kind for a in await ops.check(now=1003))
            assert kinds == ["all_endpoints_down", "stale_head", "wrong_chain"]
        with Store(tmp_path / "k.sqlite") as store:  # restart: the conditions are remembered
            ops = OperatorAlerts(rpc, build(store, *CHANNELS), stale_head_s=30)
            assert await ops.check(now=1004) == []
            first.down, second.wrong_chain, rpc.head_changed_at = False, None, time.monotonic()
            kinds = sorted(a.kind for a in await ops.check(now=1005))
            assert kinds == ["all_endpoints_down_recovered", "endpoint_down_recovered",
                             "stale_head_recovered", "wrong_chain_recovered"]
            assert await ops.check(now=1006) == []
    finally:
        await rpc.close()
