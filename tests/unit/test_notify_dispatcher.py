"""keeper.notify.dispatcher with in-process notifiers: a buggy channel stays contained."""

from __future__ import annotations

from pathlib import Path

from pydantic import TypeAdapter
from structlog.testing import capture_logs

from keeper.notify import (
    NotifyChannels,
    RetryPolicy,
    build_notifications,
    resolve_secrets,
)
from keeper.notify.policy import Alert
from keeper.store import Store
from tests.notify_servers import make_position


class Buggy:
    name, kind = "buggy", "test"

    async def send(self, alert: Alert) -> None:
        raise KeyError("a bug, not a channel failure")


class Recorder:
    name, kind = "rec", "test"

    def __init__(self) -> None:
        self.got: list[str] = []

    async def send(self, alert: Alert) -> None:
        self.got.append(alert.key)


def test_backoff_schedule():
    p = RetryPolicy(backoff_s=1, backoff_max_s=10)
    assert [p.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


async def test_a_buggy_notifier_is_a_logged_failed_attempt_and_others_still_send(tmp_path: Path):
    chs = TypeAdapter(NotifyChannels).validate_python([
        {"kind": "webhook", "url": "http://127.0.0.1:1/x", "name": "buggy"},
        {"kind": "webhook", "url": "http://127.0.0.1:1/y", "name": "rec"},
    ])
    rec = Recorder()
    with Store(tmp_path / "k.sqlite") as store:
        n = build_notifications(chs, resolve_secrets(chs, {}), store,
                                notifiers={"buggy": Buggy(), "rec": rec})
        (alert,) = n.observe([make_position("at_risk")], now=0)
        with capture_logs() as logs:
            report = await n.deliver_due(0)
        state = n.outbox.delivery(alert.key, "buggy")
        await n.aclose()
    assert rec.got == [alert.key]
    assert (report.sent, report.retried) == (1, 1)
    assert state.attempts == 1 and "unexpected KeyError" in state.last_error
    (retry,) = [e for e in logs if e["event"] == "alert.retry"]
    assert isinstance(retry["exc_info"], KeyError) and retry["channel"] == "buggy"
    assert [e["event"] for e in logs].count("alert.sent") == 1 and len(logs) == 2
