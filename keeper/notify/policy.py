"""When to tell a person: pure decisions over (last alert state, new Position, rule, now).

No IO and no clock: ``now`` (unix seconds) is passed in, so the same inputs always give
the same alert. Per (market, account, channel) the state remembers the worst status
alerted in the current window and when the last alert went out:

=====================================  ==================================================
new status (as the channel's rule sees it)  what happens
=====================================  ==================================================
not watched, no state                  nothing
not watched, state                     ``recovered``; state cleared
watched, no state                      ``flagged``; state = (status, now)
watched, worse than the state          ``escalated``; state = (status, now)
watched, not worse, cooldown elapsed   ``reminder`` with the current status; state = (status, now)
watched, not worse, within cooldown    nothing (an improvement keeps the worst status, so a
                                       position bouncing around a threshold is not re-sent)
=====================================  ==================================================

"Watched" means the status is in the rule's ``statuses``: a channel that asked only for
``liquidatable`` hears ``recovered`` when the position is back to ``at_risk``.

Executor-driven alerts (a partial top-up, a liquidation) are made with
:func:`action_alert`; they do not touch the state.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import NamedTuple

from keeper.model import Position, Status

FLAGGED, ESCALATED, REMINDER, RECOVERED = "flagged", "escalated", "reminder", "recovered"
POLICY_KINDS = (FLAGGED, ESCALATED, REMINDER, RECOVERED)
_ACTION_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")


@dataclass(frozen=True, slots=True)
class Alert:
    """One thing to tell people. ``key`` is deterministic: the outbox dedupes on it."""

    key: str
    kind: str  # flagged | escalated | reminder | recovered | an executor kind (top_up_partial...)
    market: str
    protocol: str
    account: str
    status: Status
    previous: Status | None  # last alerted status (None for "flagged")
    health_factor_wad: int | None  # None: no debt
    collateral_base: int  # in base_unit with base_decimals (1e8 = 1 USD on Aave V3 and Comet)
    debt_base: int
    drop_to_liquidation_bps: int | None
    block: int
    action: str | None  # what the keeper did, in words
    created_at: int  # unix seconds
    main_collateral: str | None = None
    reliable: bool = True  # False: a price feed it depends on is stale or invalid
    base_unit: str = "USD"  # what collateral_base / debt_base count (Morpho Blue: the loan token)
    base_decimals: int = 8


@dataclass(frozen=True, slots=True)
class Rule:
    """Which positions a channel hears about, and how often."""

    statuses: frozenset[Status]
    cooldown_s: int
    accounts: frozenset[str] | None = None  # lower-case addresses; None: all
    protocols: frozenset[str] | None = None
    markets: frozenset[str] | None = None
    actions: bool = True  # executor-driven alerts too

    def covers(self, protocol: str, market: str, account: str) -> bool:
        return (
            (self.accounts is None or account.lower() in self.accounts)
            and (self.protocols is None or protocol in self.protocols)
            and (self.markets is None or market in self.markets)
        )


@dataclass(frozen=True, slots=True)
class AlertState:
    """Worst status alerted since the last reminder, and when the last alert went out."""

    status: Status
    alerted_at: int
    block: int


class Step(NamedTuple):
    alert: Alert | None
    state: AlertState | None  # the state to keep (None: forget the position)


def alert_key(market: str, account: str, kind: str, previous: Status | None, status: Status,
              block: int, extra: str = "") -> str:
    """``aave-main:0xAbc...:escalated:at_risk->liquidatable:1234`` (+ ``:<hash>`` for actions)."""
    prev = previous.value if previous is not None else "-"
    key = f"{market}:{account}:{kind}:{prev}->{status.value}:{block}"
    return f"{key}:{hashlib.sha256(extra.encode()).hexdigest()[:12]}" if extra else key


def _alert(pos: Position, kind: str, previous: Status | None, now: int,
           action: str | None, extra: str = "") -> Alert:
    return Alert(
        key=alert_key(pos.market, pos.account, kind, previous, pos.status, pos.block, extra),
        kind=kind,
        market=pos.market,
        protocol=pos.protocol,
        account=pos.account,
        status=pos.status,
        previous=previous,
        health_factor_wad=pos.health_factor_wad,
        collateral_base=pos.collateral_base,
        debt_base=pos.debt_base,
        drop_to_liquidation_bps=pos.drop_to_liquidation_bps,
        block=pos.block,
        action=action,
        created_at=now,
        main_collateral=pos.main_collateral,
        reliable=pos.reliable,
        base_unit=pos.base_unit,
        base_decimals=pos.base_decimals,
    )


def decide(prev: AlertState | None, pos: Position, rule: Rule, now: int,
           action: str | None = None) -> Step:
    """The alert (if any) for ``pos`` on one channel, and the state to keep. Pure."""
    if not rule.covers(pos.protocol, pos.market, pos.account):
        return Step(None, prev)
    watched = pos.status in rule.statuses
    if not watched:
        if prev is None:
            return Step(None, None)
        return Step(_alert(pos, RECOVERED, prev.status, now, action), None)
    if prev is None:
        return Step(_alert(pos, FLAGGED, None, now, action), AlertState(pos.status, now, pos.block))
    if pos.status.rank > prev.status.rank:
        alert = _alert(pos, ESCALATED, prev.status, now, action)
        return Step(alert, AlertState(pos.status, now, pos.block))
    if now - prev.alerted_at >= rule.cooldown_s:
        alert = _alert(pos, REMINDER, prev.status, now, action)
        return Step(alert, AlertState(pos.status, now, pos.block))
    return Step(None, prev)


def action_alert(pos: Position, kind: str, action: str, now: int) -> Alert:
    """An executor-driven alert: ``kind`` like ``top_up_partial`` or ``liquidated``,
    ``action`` the words a person reads ("top-up partial: wallet could only cover ...").

    Its key includes a hash of ``action``, so two different actions on one position in
    one block are two alerts, and the same report twice is one.
    """
    if not _ACTION_KIND.fullmatch(kind) or kind in POLICY_KINDS:
        raise ValueError(f"not an executor alert kind: {kind!r}")
    if not action.strip():
        raise ValueError("an executor alert needs the words of what the keeper did")
    return _alert(pos, kind, None, now, action, extra=action)
