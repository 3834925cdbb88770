"""The alert outbox in keeper's SQLite file: a restart neither repeats nor loses an alert.

Tables (created here with ``CREATE TABLE IF NOT EXISTS``; the Store's own migrations
do not know them)::

    alerts       one row per alert, keyed by Alert.key (enqueue is idempotent on it)
    deliveries   one row per (alert, channel): pending -> sent | failed, with attempts,
                 next_attempt_at and last_error
    alert_state  the policy's memory per (market, account, channel): worst status
                 alerted in the window and when, so escalation and cooldown survive a
                 restart

:meth:`Outbox.record` writes the alerts, their deliveries and the new policy state in
ONE transaction: either the alert is queued and remembered, or neither.

Delivery is at least once: a crash after a channel accepted an alert but before
``mark_sent`` was committed sends it again after the restart. The alert key travels
with every delivery (webhook ``id`` and ``X-Keeper-Alert-Id``, the email Message-ID),
so a receiver can drop the duplicate.

Integers that can exceed 2**63 (health factor, USD base amounts) are stored as TEXT.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from keeper.model import Status
from keeper.notify.policy import Alert, AlertState, Step
from keeper.store import Store

PENDING, SENT, FAILED = "pending", "sent", "failed"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS alerts (
        key             TEXT    PRIMARY KEY,
        kind            TEXT    NOT NULL,
        market          TEXT    NOT NULL,
        protocol        TEXT    NOT NULL,
        account         TEXT    NOT NULL,
        status          TEXT    NOT NULL,
        previous        TEXT,
        hf_wad          TEXT,              -- decimal digits; NULL: no debt
        collateral_base TEXT    NOT NULL,  -- decimal digits
        debt_base       TEXT    NOT NULL,
        drop_bps        INTEGER,
        main_collateral TEXT,
        reliable        INTEGER NOT NULL,
        block           INTEGER NOT NULL,
        action          TEXT,
        created_at      INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS deliveries (
        alert_key       TEXT    NOT NULL REFERENCES alerts (key),
        channel         TEXT    NOT NULL,
        state           TEXT    NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL    NOT NULL,
        last_error      TEXT,
        done_at         REAL,
        PRIMARY KEY (alert_key, channel)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (state, next_attempt_at)",
    """CREATE TABLE IF NOT EXISTS alert_state (
        market     TEXT    NOT NULL,
        account    TEXT    NOT NULL,
        channel    TEXT    NOT NULL,
        status     TEXT    NOT NULL,
        alerted_at INTEGER NOT NULL,
        block      INTEGER NOT NULL,
        PRIMARY KEY (market, account, channel)
    ) WITHOUT ROWID""",
)
_ALERT_COLUMNS = (
    "key, kind, market, protocol, account, status, previous, hf_wad, collateral_base,"
    " debt_base, drop_bps, main_collateral, reliable, block, action, created_at, base_unit,"
    " base_decimals"
)
_ADDED_COLUMNS = (("base_unit", "TEXT NOT NULL DEFAULT 'USD'"), ("base_decimals", "INTEGER NOT NULL DEFAULT 8"))


class Delivery(NamedTuple):
    """One due (alert, channel) pair."""

    alert: Alert
    channel: str
    attempts: int  # attempts made so far


@dataclass(frozen=True, slots=True)
class DeliveryState:
    state: str  # pending | sent | failed
    attempts: int
    next_attempt_at: float
    last_error: str | None
    done_at: float | None


class StateChange(NamedTuple):
    """One channel's policy step for one position (what :meth:`Outbox.record` takes)."""

    channel: str
    market: str
    account: str
    step: Step


class Outbox:
    """Alerts, deliveries and policy state on one :class:`Store`. Sync: each call is one
    short local transaction, like the Store's own methods."""

    def __init__(self, store: Store):
        self.store = store
        with store.transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)
            have = {row[1] for row in db.execute("PRAGMA table_info(alerts)")}
            for name, kind in _ADDED_COLUMNS:  # an outbox written before alerts named their unit
                if name not in have:
                    db.execute(f"ALTER TABLE alerts ADD COLUMN {name} {kind}")
        rows = store.query("SELECT market, account, channel, status, alerted_at, block"
                           " FROM alert_state")
        self._states: dict[tuple[str, str, str], AlertState] = {}
        self._positions: dict[tuple[str, str], int] = {}  # (market, account) -> states held
        for m, a, c, s, at, b in rows:
            self._keep((m, a, c), AlertState(Status(s), at, b))

    # -- policy state ------------------------------------------------------------

    def state(self, market: str, account: str, channel: str) -> AlertState | None:
        return self._states.get((market, account, channel))

    def accounts_with_state(self, market: str) -> set[str]:
        """The accounts of ``market`` some channel remembers an alert for."""
        return {account for (m, account) in self._positions if m == market}

    def has_state(self, market: str, account: str) -> bool:
        """True when any channel remembers an alert for this position (a fast skip for
        the many safe positions of a full scan)."""
        return (market, account) in self._positions

    def _keep(self, key: tuple[str, str, str], state: AlertState | None) -> None:
        pos = key[:2]
        had = key in self._states
        if state is None:
            if had:
                del self._states[key]
                self._positions[pos] -= 1
                if not self._positions[pos]:
                    del self._positions[pos]
            return
        self._states[key] = state
        if not had:
            self._positions[pos] = self._positions.get(pos, 0) + 1

    # -- writes ------------------------------------------------------------------

    def enqueue(self, alert: Alert, channels: Iterable[str], now: float | None = None) -> bool:
        """Queue ``alert`` for ``channels``. Idempotent on ``alert.key``: True when the alert
        is new; a known alert only gains deliveries for channels it did not have."""
        with self.store.transaction() as db:
            return self._enqueue(db, alert, channels, now)

    def record(self, changes: Sequence[StateChange], now: float | None = None) -> list[Alert]:
        """Queue the alerts of ``changes`` and keep their states, in one transaction.
        Returns the alerts that were new."""
        new: list[Alert] = []
        if not changes:
            return new
        with self.store.transaction() as db:
            for ch in changes:
                alert, state = ch.step
                if alert is not None and self._enqueue(db, alert, (ch.channel,), now):
                    new.append(alert)
                if state is None:
                    db.execute("DELETE FROM alert_state WHERE market = ? AND account = ?"
                               " AND channel = ?", (ch.market, ch.account, ch.channel))
                else:
                    db.execute(
                        "INSERT INTO alert_state (market, account, channel, status, alerted_at,"
                        " block) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (market, account, channel)"
                        " DO UPDATE SET status = excluded.status,"
                        " alerted_at = excluded.alerted_at, block = excluded.block",
                        (ch.market, ch.account, ch.channel, state.status.value,
                         state.alerted_at, state.block),
                    )
        for ch in changes:  # only after the commit: a failed transaction changes nothing
            self._keep((ch.market, ch.account, ch.channel), ch.step.state)
        return new

    @staticmethod
    def _enqueue(db: sqlite3.Connection, alert: Alert, channels: Iterable[str],
                 now: float | None) -> bool:
        cur = db.execute(
            f"INSERT INTO alerts ({_ALERT_COLUMNS}) VALUES ({', '.join('?' * 18)})"
            " ON CONFLICT (key) DO NOTHING",
            (alert.key, alert.kind, alert.market, alert.protocol, alert.account,
             alert.status.value, alert.previous.value if alert.previous else None,
             None if alert.health_factor_wad is None else str(alert.health_factor_wad),
             str(alert.collateral_base), str(alert.debt_base), alert.drop_to_liquidation_bps,
             alert.main_collateral, int(alert.reliable), alert.block, alert.action,
             alert.created_at, alert.base_unit, alert.base_decimals),
        )
        due = alert.created_at if now is None else now
        db.executemany(
            "INSERT INTO deliveries (alert_key, channel, state, attempts, next_attempt_at)"
            " VALUES (?, ?, 'pending', 0, ?) ON CONFLICT (alert_key, channel) DO NOTHING",
            [(alert.key, c, due) for c in channels],
        )
        return cur.rowcount > 0

    def mark_sent(self, key: str, channel: str, attempts: int, now: float) -> None:
        self._set(key, channel, SENT, attempts, now, None, done_at=now)

    def mark_retry(self, key: str, channel: str, attempts: int, next_attempt_at: float,
                   error: str) -> None:
        self._set(key, channel, PENDING, attempts, next_attempt_at, error, done_at=None)

    def mark_failed(self, key: str, channel: str, attempts: int, now: float, error: str) -> None:
        self._set(key, channel, FAILED, attempts, now, error, done_at=now)

    def _set(self, key: str, channel: str, state: str, attempts: int, next_at: float,
             error: str | None, done_at: float | None) -> None:
        with self.store.transaction() as db:
            db.execute(
                "UPDATE deliveries SET state = ?, attempts = ?, next_attempt_at = ?,"
                " last_error = coalesce(?, last_error), done_at = ?"
                " WHERE alert_key = ? AND channel = ?",
                (state, attempts, next_at, error, done_at, key, channel),
            )

    def prune(self, before: float) -> int:
        """Delete alerts whose every delivery finished before ``before``. Returns how many."""
        with self.store.transaction() as db:
            done = [r[0] for r in db.execute(
                "SELECT alert_key FROM deliveries GROUP BY alert_key"
                " HAVING sum(state = 'pending') = 0 AND max(done_at) < ?", (before,))]
            for key in done:
                db.execute("DELETE FROM deliveries WHERE alert_key = ?", (key,))
                db.execute("DELETE FROM alerts WHERE key = ?", (key,))
        return len(done)

    # -- reads -------------------------------------------------------------------

    def due(self, now: float, limit: int = 1000) -> list[Delivery]:
        """Pending deliveries whose time has come, oldest alert first."""
        rows = self.store.query(
            f"SELECT d.channel, d.attempts, {', '.join('a.' + c.strip() for c in _ALERT_COLUMNS.split(','))}"
            " FROM deliveries d JOIN alerts a ON a.key = d.alert_key"
            " WHERE d.state = 'pending' AND d.next_attempt_at <= ?"
            " ORDER BY a.created_at, a.rowid, d.channel LIMIT ?",
            (now, limit),
        )
        return [Delivery(_alert(r[2:]), r[0], r[1]) for r in rows]

    def delivery(self, key: str, channel: str) -> DeliveryState | None:
        rows = self.store.query(
            "SELECT state, attempts, next_attempt_at, last_error, done_at FROM deliveries"
            " WHERE alert_key = ? AND channel = ?", (key, channel))
        return DeliveryState(*rows[0]) if rows else None

    def alerts(self) -> list[Alert]:
        """Every stored alert, oldest first (for tests and `keeper doctor`)."""
        rows = self.store.query(f"SELECT {_ALERT_COLUMNS} FROM alerts ORDER BY created_at, rowid")
        return [_alert(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Deliveries by state: ``{"pending": 2, "sent": 10, "failed": 0}``."""
        rows = self.store.query("SELECT state, count(*) FROM deliveries GROUP BY state")
        return {PENDING: 0, SENT: 0, FAILED: 0, **dict(rows)}


def _alert(row: Sequence) -> Alert:
    (key, kind, market, protocol, account, status, previous, hf, coll, debt, drop, main,
     reliable, block, action, created_at, unit, decimals) = row
    return Alert(
        key=key, kind=kind, market=market, protocol=protocol, account=account,
        status=Status(status), previous=Status(previous) if previous else None,
        health_factor_wad=None if hf is None else int(hf), collateral_base=int(coll),
        debt_base=int(debt), drop_to_liquidation_bps=drop, block=block, action=action,
        created_at=created_at, main_collateral=main, reliable=bool(reliable),
        base_unit=unit, base_decimals=decimals,
    )
