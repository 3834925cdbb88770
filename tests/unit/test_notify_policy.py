"""keeper.notify.policy: enter / escalate / cooldown / recovery, as a pure function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.model import Status
from keeper.notify.policy import (
    ESCALATED,
    FLAGGED,
    RECOVERED,
    REMINDER,
    AlertState,
    Rule,
    action_alert,
    decide,
)
from tests.notify_servers import ACCOUNT, make_position

ALL = Rule(frozenset({Status.WATCH, Status.AT_RISK, Status.LIQUIDATABLE}), cooldown_s=3600)
HIGH = Rule(frozenset({Status.AT_RISK, Status.LIQUIDATABLE}), cooldown_s=600)


def run(rule: Rule, steps: list[tuple[int, str]]) -> list[tuple[int, str, str, str | None]]:
    """Feed (time, status) steps; return (time, kind, status, previous) of every alert."""
    state, out = None, []
    for i, (t, status) in enumerate(steps):
        alert, state = decide(state, make_position(status, block=i), rule, t)
        if alert is not None:
            out.append((t, alert.kind, alert.status.value,
                        alert.previous.value if alert.previous else None))
    return out


def test_enter_escalate_recover():
    steps = [(0, "safe"), (10, "watch"), (20, "at_risk"), (30, "liquidatable"), (40, "safe")]
    assert run(ALL, steps) == [
        (10, FLAGGED, "watch", None),
        (20, ESCALATED, "at_risk", "watch"),
        (30, ESCALATED, "liquidatable", "at_risk"),
        (40, RECOVERED, "safe", "liquidatable"),
    ]


def test_staying_bad_reminds_once_per_cooldown():
    steps = [(0, "at_risk"), (100, "at_risk"), (3599, "at_risk"), (3600, "at_risk"),
             (3700, "at_risk"), (7199, "at_risk"), (7200, "at_risk")]
    assert run(ALL, steps) == [
        (0, FLAGGED, "at_risk", None),
        (3600, REMINDER, "at_risk", "at_risk"),
        (7200, REMINDER, "at_risk", "at_risk"),
    ]


def test_improvement_is_quiet_and_bouncing_back_is_not_resent():
    steps = [(0, "liquidatable"), (10, "at_risk"), (20, "liquidatable"), (30, "at_risk"),
             (3600, "at_risk"), (3610, "liquidatable")]
    assert run(ALL, steps) == [
        (0, FLAGGED, "liquidatable", None),
        # the reminder tells the current status; the window restarts from it ...
        (3600, REMINDER, "at_risk", "liquidatable"),
        # ... so getting worse again is news
        (3610, ESCALATED, "liquidatable", "at_risk"),
    ]


def test_recovery_only_after_an_alert_and_once():
    assert run(ALL, [(0, "safe"), (10, "safe")]) == []
    assert run(ALL, [(0, "watch"), (5, "safe"), (6, "safe"), (7, "watch")]) == [
        (0, FLAGGED, "watch", None),
        (5, RECOVERED, "safe", "watch"),
        (7, FLAGGED, "watch", None),
    ]


def test_rule_statuses_define_what_is_bad_for_a_channel():
    steps = [(0, "watch"), (10, "at_risk"), (20, "liquidatable"), (30, "watch"), (40, "safe")]
    assert run(HIGH, steps) == [
        (10, FLAGGED, "at_risk", None),
        (20, ESCALATED, "liquidatable", "at_risk"),
        (30, RECOVERED, "watch", "liquidatable"),  # below what this channel watches
    ]


def test_rule_filters_accounts_protocols_markets():
    pos = make_position("liquidatable")
    other = "0x00000000000000000000000000000000000000b2"
    for rule in (Rule(ALL.statuses, 60, accounts=frozenset({other})),
                 Rule(ALL.statuses, 60, protocols=frozenset({"morpho_blue"})),
                 Rule(ALL.statuses, 60, markets=frozenset({"other-market"}))):
        assert decide(None, pos, rule, 0) == (None, None)
    rule = Rule(ALL.statuses, 60, accounts=frozenset({ACCOUNT.lower()}),
                protocols=frozenset({"aave_v3"}), markets=frozenset({"aave-main"}))
    assert decide(None, pos, rule, 0).alert is not None


def test_alert_carries_the_position_and_a_deterministic_key():
    pos = make_position("liquidatable", block=1234)
    prev = AlertState(Status.AT_RISK, 0, 1200)
    a1, state = decide(prev, pos, ALL, 50, action="top-up sent: 0xabc")
    a2, _ = decide(prev, pos, ALL, 99, action="top-up sent: 0xabc")
    assert a1 is not None and a2 is not None
    assert a1.key == a2.key == f"aave-main:{ACCOUNT}:escalated:at_risk->liquidatable:1234"
    assert (a1.health_factor_wad, a1.collateral_base, a1.debt_base) == (
        pos.health_factor_wad, pos.collateral_base, pos.debt_base)
    assert a1.action == "top-up sent: 0xabc" and a1.created_at == 50
    assert state == AlertState(Status.LIQUIDATABLE, 50, 1234)


def test_action_alerts():
    pos = make_position("at_risk", block=7)
    a = action_alert(pos, "top_up_partial", "top-up partial: wallet could only cover $10.00", 5)
    b = action_alert(pos, "top_up_partial", "top-up partial: wallet could only cover $20.00", 5)
    again = action_alert(pos, "top_up_partial", "top-up partial: wallet could only cover $10.00", 9)
    assert a.key != b.key and a.key == again.key
    assert a.kind == "top_up_partial" and a.previous is None and a.status is Status.AT_RISK
    with pytest.raises(ValueError):
        action_alert(pos, "flagged", "x", 0)  # the policy's own kinds are not executor kinds
    with pytest.raises(ValueError):
        action_alert(pos, "Liquidated!", "x", 0)
    with pytest.raises(ValueError):
        action_alert(pos, "liquidated", "  ", 0)


STATUSES = ["safe", "watch", "at_risk", "liquidatable"]


@settings(max_examples=400, deadline=None)
@given(
    cooldown=st.integers(0, 500),
    statuses=st.sampled_from([ALL.statuses, HIGH.statuses, frozenset({Status.LIQUIDATABLE})]),
    steps=st.lists(st.tuples(st.integers(0, 300), st.sampled_from(STATUSES)), max_size=60),
)
def test_property_no_repeat_within_cooldown_unless_escalation(cooldown, statuses, steps):
    rule = Rule(statuses, cooldown)
    t, state = 0, None
    alerts = []  # (t, alert)
    last_alert_t: int | None = None
    for i, (dt, status) in enumerate(steps):
        t += dt
        before = state
        alert, state = decide(state, make_position(status, block=i), rule, t)
        watched = Status(status) in statuses
        # liveness: entering, worsening, a due reminder and recovery are never missed
        if watched and before is None:
            assert alert is not None and alert.kind == FLAGGED
        elif watched and Status(status).rank > before.status.rank:
            assert alert is not None and alert.kind == ESCALATED
        elif watched and t - before.alerted_at >= cooldown:
            assert alert is not None and alert.kind == REMINDER
        elif not watched and before is not None:
            assert alert is not None and alert.kind == RECOVERED and state is None
        else:
            assert alert is None
        if alert is not None:
            if alert.kind == REMINDER:
                assert last_alert_t is not None and t - last_alert_t >= cooldown
            alerts.append((t, alert))
            last_alert_t = t
    # safety: two alerts of the same status within the cooldown need a recovery between
    # them, or the later one is an escalation
    for i, (ti, ai) in enumerate(alerts):
        for j in range(i + 1, len(alerts)):
            tj, aj = alerts[j]
            if aj.status == ai.status and tj - ti < cooldown and RECOVERED not in (ai.kind, aj.kind):
                kinds = [a.kind for _, a in alerts[i + 1 : j + 1]]
                assert RECOVERED in kinds or aj.kind == ESCALATED, (ai, aj)


def test_policy_and_message_are_pure():
    root = Path(__file__).resolve().parents[2] / "keeper" / "notify"
    io = {"httpx", "asyncio", "sqlite3", "smtplib", "socket", "aiohttp", "time", "os",
          "keeper.store", "keeper.log"}
    for name in ("policy.py", "message.py"):
        tree = ast.parse((root / name).read_text())
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
        bad = {m for m in imported if m in io or m.split(".")[0] in io}
        assert not bad, f"{name} imports {bad}"
