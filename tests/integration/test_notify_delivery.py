"""Outbox + dispatcher against real loopback servers: retries, restarts, failing channels."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import structlog
from pydantic import TypeAdapter
from structlog.testing import capture_logs

from keeper import log as keeper_log
from keeper.model import Status
from keeper.notify import (
    NotifyChannels,
    NotifyRules,
    action_alert,
    build_notifications,
    resolve_secrets,
)
from keeper.notify.outbox import FAILED, PENDING, SENT
from keeper.store import Store
from tests.notify_servers import ACCOUNT, HttpSink, free_port, make_position

TOKEN = "987654321:AAFakeTokenForTestsOnly0123456789xyz"
HOOK_SECRET = "whsec-0123456789abcdef"
OTHER = "0x00000000000000000000000000000000000000B2"


@pytest.fixture(autouse=True)
def _chain_snapshot():
    """These tests need no chain: replace the integration conftest's anvil snapshot."""
    yield


@pytest_asyncio.fixture(loop_scope="session")
async def sink() -> AsyncIterator[HttpSink]:
    server = HttpSink()
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def sink2() -> AsyncIterator[HttpSink]:
    server = HttpSink()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "keeper.sqlite"


def channels(*tables: dict):
    return TypeAdapter(NotifyChannels).validate_python(list(tables))


def hook(url: str, **extra) -> dict:
    return {"kind": "webhook", "url": url, "max_attempts": 5, "timeout_s": 2, **extra}


async def build(chs, store, env=None, rules=None):
    return build_notifications(chs, resolve_secrets(chs, env or {}), store, rules)


def accepted(sink: HttpSink, path: str) -> list[dict]:
    """Bodies the endpoint accepted (answered 2xx)."""
    return [json.loads(r.body) for r in sink.accepted(path)]


async def test_fails_twice_then_succeeds_is_received_exactly_once(sink, db):
    sink.fail_next(2)
    with Store(db) as store:
        n = await build(channels(hook(sink.base_url + "/hook")), store)
        (alert,) = n.observe([make_position("at_risk")], now=1000)
        r0 = await n.deliver_due(1000)  # 500 -> retry at +1
        r1 = await n.deliver_due(1000.5)  # not due yet: no request
        r2 = await n.deliver_due(1001)  # 500 -> retry at +2
        r3 = await n.deliver_due(1002.9)  # not due
        r4 = await n.deliver_due(1003)  # 200
        r5 = await n.deliver_due(10_000)  # nothing left
        await n.aclose()
        state = n.outbox.delivery(alert.key, "webhook-0")
    assert [(r.sent, r.retried) for r in (r0, r1, r2, r3, r4, r5)] == [
        (0, 1), (0, 0), (0, 1), (0, 0), (1, 0), (0, 0)]
    assert len(sink.requests) == 3 and sink.failures == 0  # 2 refused + 1 accepted
    assert {json.loads(r.body)["id"] for r in sink.requests} == {alert.key}
    assert (state.state, state.attempts, state.last_error) == (SENT, 3, "webhook-0: HTTP 500 internal error (on purpose)")


async def test_restart_neither_repeats_nor_loses(sink, db):
    pos = make_position("liquidatable")
    sink.fail_next(1)
    with Store(db) as store:
        n = await build(channels(hook(sink.base_url + "/hook")), store)
        (alert,) = n.observe([pos], now=100)
        assert n.observe([pos], now=101) == []  # same status within cooldown
        assert (await n.deliver_due(100)).retried == 1
        await n.aclose()
    assert len(sink.requests) == 1

    with Store(db) as store:  # restart: a new Store on the same file
        n = await build(channels(hook(sink.base_url + "/hook")), store)
        assert n.observe([pos], now=200) == []  # the policy state came back too
        assert n.outbox.enqueue(alert, ["webhook-0"]) is False  # same key: one alert
        assert (await n.deliver_due(200)).sent == 1
        await n.aclose()
    assert [json.loads(r.body)["id"] for r in sink.requests] == [alert.key, alert.key]

    with Store(db) as store:  # an already-sent alert is not sent again after a restart
        n = await build(channels(hook(sink.base_url + "/hook")), store)
        report = await n.deliver_due(10**9)
        assert (report.sent, report.retried, report.failed) == (0, 0, 0)
        assert len(n.outbox.alerts()) == 1 and n.outbox.counts()[SENT] == 1
        await n.aclose()
    assert len(sink.requests) == 2


async def test_a_dead_channel_does_not_stop_the_others(sink, sink2, db):
    dead = f"http://127.0.0.1:{free_port()}/hook"  # connection refused
    sink2.hang_s = 5  # answers after the channel's timeout
    chs = channels(hook(dead, name="dead"), hook(sink2.base_url + "/slow", name="slow",
                   timeout_s=0.3), hook(sink.base_url + "/hook", name="good"))
    with Store(db) as store:
        n = await build(chs, store)
        (alert,) = n.observe([make_position("at_risk")], now=50)
        report = await n.deliver_due(50)
        dead_state = n.outbox.delivery(alert.key, "dead")
        slow_state = n.outbox.delivery(alert.key, "slow")
        await n.aclose()
    assert (report.sent, report.retried) == (1, 2)
    assert [b["id"] for b in accepted(sink, "/hook")] == [alert.key]
    assert dead_state.state == PENDING and "ConnectError" in dead_state.last_error
    assert dead_state.next_attempt_at == 51
    assert slow_state.state == PENDING and "no answer within 0.3s" in slow_state.last_error


async def test_channels_are_sent_concurrently(sink, sink2, db):
    """The first channel's endpoint answers only once the second one has its request:
    one channel after the other would time out the first."""
    sink.hang_s = 30
    sink2.on_request = lambda _: sink.release()
    chs = channels(hook(sink.base_url + "/a", name="a-first", timeout_s=10),
                   hook(sink2.base_url + "/b", name="b-second"))
    with Store(db) as store:
        n = await build(chs, store)
        n.observe([make_position("at_risk")], now=1)
        report = await n.deliver_due(1)
        await n.aclose()
    assert (report.sent, report.retried) == (2, 0)
    assert len(sink.accepted("/a")) == len(sink2.accepted("/b")) == 1


async def test_backoff_doubles_caps_and_gives_up_with_one_failed_line(db):
    dead = f"http://127.0.0.1:{free_port()}/hook"
    chs = channels(hook(dead, max_attempts=5, backoff_s=1, backoff_max_s=3))
    with Store(db) as store:
        n = await build(chs, store)
        (alert,) = n.observe([make_position("liquidatable")], now=0)
        times, now = [], 0.0
        with capture_logs() as logs:
            for _ in range(5):
                await n.deliver_due(now)
                times.append(now)
                now = n.outbox.delivery(alert.key, "webhook-0").next_attempt_at
            await n.deliver_due(now + 10**6)  # failed for good: never tried again
        final = n.outbox.delivery(alert.key, "webhook-0")
        await n.aclose()
    assert times == [0, 1, 3, 6, 9]  # waits 1, 2, 3 (capped), 3
    assert (final.state, final.attempts) == (FAILED, 5)
    events = [e["event"] for e in logs]
    assert events == ["alert.retry"] * 4 + ["alert.failed"]
    assert logs[-1]["log_level"] == "error" and logs[-1]["attempts"] == 5
    assert logs[0]["channel"] == "webhook-0" and logs[0]["retry_in_s"] == 1


async def test_alerts_of_one_position_go_out_in_order(sink, db):
    with Store(db) as store:
        n = await build(channels(hook(sink.base_url + "/hook")), store)
        a1 = n.observe([make_position("watch", block=1)], now=10)
        a2 = n.observe([make_position("liquidatable", block=2)], now=11)
        a3 = n.observe([make_position("at_risk", block=2, account=OTHER)], now=12)
        sink.fail_next(1)
        report = await n.deliver_due(20)
        assert (report.sent, report.retried, report.deferred) == (1, 1, 1)  # OTHER went out
        assert n.outbox.delivery(a2[0].key, "webhook-0").attempts == 0  # waited its turn
        report = await n.deliver_due(21)
        await n.aclose()
    assert report.sent == 2
    order = [b["id"] for b in accepted(sink, "/hook")]
    assert order[-2:] == [a1[0].key, a2[0].key] and a3[0].key in order


async def test_every_kind_end_to_end_and_no_secret_in_logs(sink, db):
    chs = channels(
        {"kind": "webhook", "url": sink.base_url + "/hook", "secret_env": "HOOK_SECRET"},
        {"kind": "slack", "url_env": "SLACK_URL"},
        {"kind": "discord", "url": sink.base_url + "/discord", "statuses": ["liquidatable"]},
        {"kind": "telegram", "base_url": sink.base_url, "chat_id": 42, "token_env": "TG_TOKEN",
         "accounts": [OTHER]},
    )
    env = {"HOOK_SECRET": HOOK_SECRET, "TG_TOKEN": TOKEN,
           "SLACK_URL": sink.base_url + "/services/T000/B000/SlackSecretPart0123"}
    buf = io.StringIO()
    keeper_log.configure_logging(json=True, level="debug", stream=buf)
    try:
        with Store(db) as store:
            n = await build(chs, store, env, NotifyRules(cooldown_s=60))
            n.observe([make_position("at_risk", block=1),
                       make_position("liquidatable", block=1, account=OTHER)], now=0)
            sink.fail_next(1)
            await n.deliver_due(0)
            await n.deliver_due(100)
            liquidated = action_alert(make_position("liquidatable", block=3, account=OTHER),
                                      "liquidated", "liquidated for profit $12.34", 150)
            assert n.report(liquidated) is True and n.report(liquidated) is False
            await n.deliver_due(150)
            counts = n.outbox.counts()
            await n.aclose()
    finally:
        keeper_log.clear_secrets()
        structlog.reset_defaults()
        root = logging.getLogger()
        for h in [h for h in root.handlers if getattr(h, "_keeper_handler", False)]:
            root.removeHandler(h)
    # webhook, slack: both positions and the liquidation; discord: only liquidatable ones;
    # telegram: only OTHER. One request of the first round was refused and retried.
    assert counts == {PENDING: 0, SENT: 3 + 3 + 2 + 2, FAILED: 0}
    slack = "/services/T000/B000/SlackSecretPart0123"
    tg = f"/bot{TOKEN}/sendMessage"
    got = {p: len(sink.accepted(p)) for p in ("/hook", slack, "/discord", tg)}
    assert got == {"/hook": 3, slack: 3, "/discord": 2, tg: 2}
    assert len(sink.requests) == 11
    signed = sink.accepted("/hook")[0]
    assert signed.headers["x-keeper-signature"].startswith("sha256=")
    assert {json.loads(r.body)["chat_id"] for r in sink.accepted(tg)} == {42}
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    events = [line["event"] for line in lines if line["event"].startswith("alert.")]
    assert events.count("alert.sent") == 10 and events.count("alert.retry") == 1
    assert len(events) == 11
    text = buf.getvalue()
    for secret in (TOKEN, HOOK_SECRET, "SlackSecretPart0123", "/bot"):
        assert secret not in text, secret
    for line in lines:
        assert "url" not in line


async def test_channels_without_actions_do_not_get_executor_alerts(sink, db):
    chs = channels(hook(sink.base_url + "/a", name="a"),
                   hook(sink.base_url + "/b", name="b", actions=False),
                   hook(sink.base_url + "/c", name="c", accounts=[OTHER]))
    with Store(db) as store:
        n = await build(chs, store)
        alert = action_alert(make_position("at_risk"), "top_up_partial",
                             "top-up partial: wallet could only cover $10.00", 5)
        assert n.report(alert)
        await n.deliver_due(5)
        await n.aclose()
    assert [r.path for r in sink.requests] == ["/a"]
    body = json.loads(sink.requests[0].body)
    assert body["kind"] == "top_up_partial" and body["account"] == ACCOUNT
    assert body["status"] == Status.AT_RISK.value
