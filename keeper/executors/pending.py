"""Decisions whose transactions may be in flight: ``action_pending``, one row per action,
committed before its first transaction and deleted with its ``actions`` row. What a
restart needs to finish the action (keeper.executors.recovery): the decision itself, with
the protocol's own quote (what ``encode`` and ``realized`` read).

Decisions are stored with :mod:`pickle` through an unpickler that only rebuilds keeper's own
classes and plain builtins: the store is keeper's own file, and even so nothing else loads.
"""

from __future__ import annotations

import io
import pickle
import time
from typing import Any

from keeper.model import Decision
from keeper.store import Store

_SCHEMA = """CREATE TABLE IF NOT EXISTS action_pending (
  action_key TEXT PRIMARY KEY, decision BLOB NOT NULL, created_at REAL NOT NULL)"""
_BUILTINS = {"tuple", "frozenset", "set", "list", "dict", "int", "str", "bytes", "bool"}


class _KeeperOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _BUILTINS:
            return super().find_class(module, name)
        if module.startswith("keeper."):
            found = super().find_class(module, name)
            if isinstance(found, type):  # a class (a dataclass, an enum), never a function
                return found
        raise pickle.UnpicklingError(f"action_pending: {module}.{name} is not a keeper class")


def dumps(d: Decision) -> bytes:
    return pickle.dumps(d, protocol=5)


def loads(blob: bytes) -> Decision:
    return _KeeperOnly(io.BytesIO(blob)).load()


class PendingActions:
    """Decisions whose transactions may be in flight, committed before the first one."""

    def __init__(self, store: Store):
        self.store = store
        with store.transaction() as db:
            db.execute(_SCHEMA)

    def save(self, key: str, d: Decision) -> None:
        self.save_many([(key, d)])

    def save_many(self, items: list[tuple[str, Decision]]) -> None:
        """Several decisions in one committed write (a tick's burst of liquidations)."""
        now = time.time()
        with self.store.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO action_pending (action_key, decision, created_at)"
                           " VALUES (?, ?, ?)", [(key, dumps(d), now) for key, d in items])

    def done(self, key: str) -> None:
        with self.store.transaction() as db:
            db.execute("DELETE FROM action_pending WHERE action_key = ?", (key,))

    def all(self) -> list[tuple[str, Decision]]:
        rows = self.store.query("SELECT action_key, decision FROM action_pending ORDER BY created_at")
        return [(k, loads(blob)) for k, blob in rows]
