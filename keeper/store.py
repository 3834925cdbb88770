"""Keeper's state in one SQLite file: the borrower index, discovery checkpoints, last statuses.

Sync on purpose. Each call is one short transaction on a local WAL-mode file
(microseconds to a few milliseconds), so the async engine calls the methods directly;
a caller with a very large batch may use ``await asyncio.to_thread(store.add_accounts,
...)``: the connection is opened with ``check_same_thread=False`` and every call holds
a lock, so that is safe.

Durability: WAL with ``synchronous=NORMAL``. A crash of keeper loses nothing that was
committed; a power cut may lose the last transactions but never tears one. That is
why :meth:`Store.record_discovery` writes the accounts found in a block range and the
checkpoint at its end in the same transaction: the checkpoint never moves past
accounts that were not saved.

Schema changes are migrations by version: append to ``_MIGRATIONS``; never edit one
that has shipped. Integers that can exceed 2**63 (health factors up to 2**256-1) are
stored as TEXT.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from keeper.addresses import checksum

from keeper.errors import ConfigError
from keeper.model import Status

_MIGRATIONS: tuple[str, ...] = (
    # 1: borrower index, discovery checkpoints, last status per position
    """
    CREATE TABLE accounts (
        market      TEXT    NOT NULL,
        account     TEXT    NOT NULL,
        first_block INTEGER NOT NULL,
        last_block  INTEGER NOT NULL,
        PRIMARY KEY (market, account)
    ) WITHOUT ROWID;
    CREATE TABLE checkpoints (
        market TEXT    PRIMARY KEY,
        block  INTEGER NOT NULL
    );
    CREATE TABLE positions (
        market  TEXT    NOT NULL,
        account TEXT    NOT NULL,
        status  TEXT    NOT NULL,
        hf_wad  TEXT,               -- decimal digits, NULL when the account has no debt
        block   INTEGER NOT NULL,
        PRIMARY KEY (market, account)
    ) WITHOUT ROWID;
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)


@dataclass(frozen=True, slots=True)
class StatusRecord:
    """The last status stored for one position."""

    status: Status
    hf_wad: int | None
    block: int


class Store:
    """One open database file. Use as a context manager, or call :meth:`close`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=5.0
            )
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"cannot open the database: {e}", path=str(self.path)) from e
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise ConfigError(f"not a usable keeper database: {e}", path=str(self.path)) from e
        except ConfigError:
            self._db.close()
            raise

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on success, rolled back on any exception."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A write transaction for components that keep their own tables in this file
        (alerts outbox, tx journal): ``with store.transaction() as db: db.execute(...)``."""
        return self._tx()

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """A read outside any write transaction."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def schema_version(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT version FROM schema_version").fetchone()
        return row[0] if row else 0

    def _migrate(self) -> None:
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                db.execute("INSERT INTO schema_version (version) VALUES (0)")
            current = row[0] if row else 0
            if current > SCHEMA_VERSION:
                raise ConfigError(
                    f"database schema version {current} is newer than this keeper knows"
                    f" ({SCHEMA_VERSION}): upgrade keeper or use another store.path",
                    path=str(self.path),
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                try:
                    for statement in _statements(_MIGRATIONS[version - 1]):
                        db.execute(statement)
                except sqlite3.Error as e:
                    raise ConfigError(
                        f"migration to schema version {version} failed: {e}", path=str(self.path)
                    ) from e
                db.execute("UPDATE schema_version SET version = ?", (version,))

    # -- borrower index + discovery checkpoint --------------------------------

    def add_accounts(self, market: str, accounts: Iterable[str], block: int) -> int:
        """Record ``accounts`` as seen at ``block``; idempotent. Returns how many were new."""
        with self._tx() as db:
            return self._add(db, market, accounts, block)

    def accounts(self, market: str) -> list[str]:
        """Every account of ``market``, checksummed, in address order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT account FROM accounts WHERE market = ? ORDER BY account", (market,)
            ).fetchall()
        return [r[0] for r in rows]

    def get_checkpoint(self, market: str) -> int | None:
        """Last block whose discovery is complete for ``market``, or None before the first."""
        with self._lock:
            row = self._db.execute(
                "SELECT block FROM checkpoints WHERE market = ?", (market,)
            ).fetchone()
        return row[0] if row else None

    def set_checkpoint(self, market: str, block: int) -> None:
        """Move the checkpoint (backwards too, e.g. to re-scan after a reorg)."""
        with self._tx() as db:
            self._set_checkpoint(db, market, block)

    def record_discovery(self, market: str, accounts: Iterable[str], to_block: int) -> int:
        """Accounts found up to ``to_block`` and the checkpoint, in ONE transaction.

        Either both are saved or neither is, so a crash never skips a range.
        ``first_block``/``last_block`` of an account are the ``to_block`` of the chunks
        it was seen in (an upper bound: discovery reports no exact block).
        Returns how many accounts were new.
        """
        with self._tx() as db:
            added = self._add(db, market, accounts, to_block)
            self._set_checkpoint(db, market, to_block)
        return added

    @staticmethod
    def _add(db: sqlite3.Connection, market: str, accounts: Iterable[str], block: int) -> int:
        _check_block(block)
        new = 0
        for account in accounts:
            checked = checksum(account)
            cur = db.execute(
                "INSERT INTO accounts (market, account, first_block, last_block)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (market, account) DO NOTHING",
                (market, checked, block, block),
            )
            if cur.rowcount:
                new += 1
            else:
                db.execute(
                    "UPDATE accounts SET first_block = min(first_block, ?),"
                    " last_block = max(last_block, ?) WHERE market = ? AND account = ?",
                    (block, block, market, checked),
                )
        return new

    @staticmethod
    def _set_checkpoint(db: sqlite3.Connection, market: str, block: int) -> None:
        _check_block(block)
        db.execute(
            "INSERT INTO checkpoints (market, block) VALUES (?, ?)"
            " ON CONFLICT (market) DO UPDATE SET block = excluded.block",
            (market, block),
        )

    # -- last status per position (alerts: escalation and cooldown) ----------

    def set_status(
        self, market: str, account: str, status: Status | str, hf_wad: int | None, block: int
    ) -> None:
        """Remember the last status of one position (``hf_wad`` None: no debt)."""
        self.set_statuses(market, [(account, status, hf_wad, block)])

    def set_statuses(
        self, market: str, rows: Iterable[tuple[str, Status | str, int | None, int]], checked: bool = False
    ) -> int:
        """Many ``set_status`` in one transaction (one tick's transitions). Returns the count.
        ``checked``: the accounts are EIP-55 already (the engine's: discovered from logs,
        keeper.chain.logs), not hashed again (~20 µs each, thousands in a crash's block)."""
        values = []
        for account, status, hf_wad, block in rows:
            _check_block(block)
            if hf_wad is not None and hf_wad < 0:
                raise ValueError(f"hf_wad must not be negative: {hf_wad}")
            values.append((market, account if checked else checksum(account), Status(status).value,
                           None if hf_wad is None else str(hf_wad), block))
        if not values:
            return 0
        with self._tx() as db:
            db.executemany(
                "INSERT INTO positions (market, account, status, hf_wad, block)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (market, account) DO UPDATE SET"
                " status = excluded.status, hf_wad = excluded.hf_wad, block = excluded.block",
                values,
            )
        return len(values)

    def get_status(self, market: str, account: str) -> StatusRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT status, hf_wad, block FROM positions WHERE market = ? AND account = ?",
                (market, checksum(account)),
            ).fetchone()
        return _status_record(row) if row else None

    def statuses(self, market: str) -> dict[str, StatusRecord]:
        """Every stored status of ``market``, by account (to warm up after a restart)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT account, status, hf_wad, block FROM positions WHERE market = ?",
                (market,),
            ).fetchall()
        return {r[0]: _status_record(r[1:]) for r in rows}


def _status_record(row: tuple[str, str | None, int]) -> StatusRecord:
    status, hf, block = row
    return StatusRecord(Status(status), None if hf is None else int(hf), block)


def _check_block(block: int) -> None:
    if isinstance(block, bool) or not isinstance(block, int) or block < 0:
        raise ValueError(f"block must be a non-negative int, got {block!r}")


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would COMMIT our tx)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
