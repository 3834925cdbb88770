"""keeper.notify.service: positions in -> alerts queued per channel (no network here)."""

from __future__ import annotations

from pathlib import Path

from pydantic import TypeAdapter

from keeper.notify import NotifyChannels, build_notifications, resolve_secrets
from keeper.notify.outbox import PENDING
from keeper.store import Store
from tests.notify_servers import ACCOUNT, make_position

OTHER = "0x00000000000000000000000000000000000000B2"


def build(store: Store, *tables: dict):
    chs = TypeAdapter(NotifyChannels).validate_python(list(tables))
    return build_notifications(chs, resolve_secrets(chs, {}), store)


def test_one_alert_row_per_event_one_delivery_per_channel(tmp_path: Path):
    with Store(tmp_path / "k.sqlite") as store:
        n = build(store, {"kind": "webhook", "url": "http://127.0.0.1:1/a"},
                  {"kind": "slack", "url": "http://127.0.0.1:1/b"},
                  {"kind": "discord", "url": "http://127.0.0.1:1/c", "statuses": ["liquidatable"]})
        new = n.observe([make_position("at_risk", block=1)], now=0,
                        actions={("aave-main", ACCOUNT): "dry run: would top up"})
        assert [a.kind for a in new] == ["flagged"] and new[0].action == "dry run: would top up"
        assert n.outbox.counts()[PENDING] == 2  # webhook + slack; discord waits for liquidatable
        new = n.observe([make_position("liquidatable", block=2)], now=10)
        # webhook and slack: escalated; discord: flagged (its first status)
        assert sorted(a.kind for a in new) == ["escalated", "flagged"]
        assert n.outbox.counts()[PENDING] == 5


def test_would_alert_agrees_with_observe(tmp_path: Path):
    with Store(tmp_path / "k.sqlite") as store:
        n = build(store, {"kind": "webhook", "url": "http://127.0.0.1:1/a", "cooldown_s": 100})
        seq = [("safe", 0), ("watch", 1), ("watch", 50), ("at_risk", 60), ("watch", 70),
               ("watch", 160), ("safe", 170), ("safe", 180)]
        for i, (status, t) in enumerate(seq):
            pos = make_position(status, block=i)
            expected = n.would_alert(pos, t)
            assert bool(n.observe([pos], t)) == expected, (status, t)


def test_many_safe_positions_are_cheap_and_silent(tmp_path: Path):
    with Store(tmp_path / "k.sqlite") as store:
        n = build(store, {"kind": "webhook", "url": "http://127.0.0.1:1/a"})
        safe = [make_position("safe", account=f"0x{i:040x}") for i in range(5000)]
        assert n.observe(safe, now=0) == []
        assert n.outbox.alerts() == []
        assert n.observe([make_position("at_risk", account=OTHER)], now=0)
