""""Cannot protect": an operator alert once when a protected account below its trigger cannot
be helped (the wallet holds none of its configured tokens, no action can reach it), and once
when it can be again (a top-up was decided, or the account is back above its trigger).

The alerts carry the account's own position (market, protocol, health factor), kinds
``protect_failed`` and ``protect_failed_recovered``. The accounts under way are kept in the
outbox's policy state (market ``keeper:protect``, account ``<watch>:<address>``), in the same
SQLite transaction as the alert, so a restart neither repeats the alert nor forgets the
recovery. Pure over its inputs but for the outbox; no chain reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from keeper.model import Address, Position
from keeper.notify.outbox import StateChange
from keeper.notify.policy import AlertState, Step, action_alert

log = structlog.get_logger("keeper.respond")
STATE_MARKET = "keeper:protect"


def update(notifications: Any, watch: str, refused: Mapping[Address, str],
           positions: Mapping[Address, Position], now: int) -> list:
    """``refused``: account -> why, for this tick of market ``watch``; ``positions``: the
    watch's current positions. Returns the alerts that were new."""
    prefix = f"{watch}:"
    active = {a[len(prefix):] for a in notifications.outbox.accounts_with_state(STATE_MARKET)
              if a.startswith(prefix)}
    changes: list[StateChange] = []
    for account in set(refused) | active:
        pos = positions.get(account)
        if pos is None or (account in refused) == (account in active):
            continue
        if account in refused:
            step = Step(action_alert(pos, "protect_failed", refused[account], now),
                        AlertState(pos.status, now, pos.block))
        else:
            step = Step(action_alert(pos, "protect_failed_recovered",
                                     "cannot protect: recovered (an action can help again, or the "
                                     "account is back above its trigger)", now), None)
        for channel, rule in notifications.rules.items():
            if rule.covers(pos.protocol, pos.market, pos.account):
                changes.append(StateChange(channel, STATE_MARKET, prefix + account, step))
    new = notifications.outbox.record(changes, now)
    for alert in new:
        log.warning("operator.alert", kind=alert.kind, market=watch, account=alert.account,
                    detail=alert.action)
    return new
