"""keeper.notify.outbox: alerts, deliveries and policy state in the SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from keeper.model import Status
from keeper.notify.outbox import FAILED, PENDING, SENT, Outbox, StateChange
from keeper.notify.policy import AlertState, Rule, Step, action_alert, decide
from keeper.store import Store
from tests.notify_servers import ACCOUNT, make_position

RULE = Rule(frozenset({Status.WATCH, Status.AT_RISK, Status.LIQUIDATABLE}), 3600)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "keeper.sqlite"


def test_alert_round_trips_exactly(db):
    big = 2**256 - 1
    pos = make_position("liquidatable", hf_wad=big - 1, collateral_base=2**70, debt_base=2**64 + 1,
                        drop_to_liquidation_bps=None, main_collateral=None, reliable=False)
    alert = action_alert(pos, "liquidated", "liquidated for profit $1.00", 1_700_000_000)
    with Store(db) as store:
        assert Outbox(store).enqueue(alert, ["a", "b"])
    with Store(db) as store:
        (back,) = Outbox(store).alerts()
    assert back == alert


def test_enqueue_is_idempotent_on_the_key(db):
    alert, _ = decide(None, make_position("at_risk"), RULE, 10)
    with Store(db) as store:
        box = Outbox(store)
        assert box.enqueue(alert, ["hook"]) is True
        assert box.enqueue(alert, ["hook"]) is False
        assert box.enqueue(alert, ["hook", "mail"]) is False  # known alert, one more channel
        assert len(box.alerts()) == 1
        assert box.counts() == {PENDING: 2, SENT: 0, FAILED: 0}
    with Store(db) as store:  # and after a restart
        box = Outbox(store)
        assert box.enqueue(alert, ["hook", "mail"]) is False
        assert box.counts()[PENDING] == 2


def test_due_and_delivery_states(db):
    a1, _ = decide(None, make_position("watch", block=1), RULE, 10)
    a2, _ = decide(AlertState(Status.WATCH, 10, 1), make_position("at_risk", block=2), RULE, 20)
    with Store(db) as store:
        box = Outbox(store)
        box.enqueue(a2, ["hook"])  # queued out of order: due() still gives the oldest first
        box.enqueue(a1, ["hook"])
        assert box.due(9) == []
        assert [d.alert.key for d in box.due(20)] == [a1.key, a2.key]
        box.mark_retry(a1.key, "hook", 1, 30.0, "hook: HTTP 500")
        assert [d.alert.key for d in box.due(29)] == [a2.key]
        (d,) = [d for d in box.due(30) if d.alert.key == a1.key]
        assert d.attempts == 1
        box.mark_sent(a1.key, "hook", 2, 31.0)
        box.mark_failed(a2.key, "hook", 5, 32.0, "hook: ConnectError")
        assert box.due(10**10) == []
        s1, s2 = box.delivery(a1.key, "hook"), box.delivery(a2.key, "hook")
        assert (s1.state, s1.attempts, s1.last_error, s1.done_at) == (SENT, 2, "hook: HTTP 500", 31.0)
        assert (s2.state, s2.attempts, s2.last_error) == (FAILED, 5, "hook: ConnectError")
        assert box.prune(before=32.0) == 1  # a2 finished at 32.0: not before it
        assert box.prune(before=33.0) == 1
        assert box.alerts() == []


def test_policy_state_survives_a_restart_and_is_written_with_the_alert(db):
    pos = make_position("at_risk", block=5)
    step = decide(None, pos, RULE, 100)
    with Store(db) as store:
        box = Outbox(store)
        assert box.record([StateChange("hook", pos.market, pos.account, step)]) == [step.alert]
    with Store(db) as store:
        box = Outbox(store)
        assert box.state(pos.market, ACCOUNT, "hook") == AlertState(Status.AT_RISK, 100, 5)
        assert box.state(pos.market, ACCOUNT, "mail") is None
        # recovery clears it
        rec = decide(box.state(pos.market, ACCOUNT, "hook"), make_position("safe"), RULE, 200)
        box.record([StateChange("hook", pos.market, ACCOUNT, rec)])
        assert box.state(pos.market, ACCOUNT, "hook") is None
    with Store(db) as store:
        assert Outbox(store).state(pos.market, ACCOUNT, "hook") is None
        assert len(Outbox(store).alerts()) == 2


def test_a_failed_record_changes_nothing(db):
    pos = make_position("at_risk")
    good = decide(None, pos, RULE, 1)
    with Store(db) as store:
        box = Outbox(store)
        broken = StateChange("hook", pos.market, pos.account, Step(good.alert, "not a state"))
        with pytest.raises(AttributeError):
            box.record([StateChange("mail", pos.market, pos.account, good), broken])
        assert box.alerts() == [] and box.state(pos.market, pos.account, "mail") is None


def test_has_state_tracks_positions_across_channels(db):
    pos = make_position("at_risk")
    with Store(db) as store:
        box = Outbox(store)
        assert not box.has_state(pos.market, pos.account)
        for ch in ("a", "b"):
            box.record([StateChange(ch, pos.market, pos.account, decide(None, pos, RULE, 1))])
        assert box.has_state(pos.market, pos.account)
        safe = make_position("safe")
        box.record([StateChange("a", pos.market, pos.account,
                                decide(box.state(pos.market, pos.account, "a"), safe, RULE, 2))])
        assert box.has_state(pos.market, pos.account)  # "b" still remembers it
    with Store(db) as store:
        box = Outbox(store)
        assert box.has_state(pos.market, pos.account)
        box.record([StateChange("b", pos.market, pos.account,
                                decide(box.state(pos.market, pos.account, "b"), safe, RULE, 3))])
        assert not box.has_state(pos.market, pos.account)
