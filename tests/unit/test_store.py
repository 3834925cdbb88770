"""keeper.store on a real SQLite file in a temp directory."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper import store as store_module
from keeper.errors import ConfigError
from keeper.model import Status
from keeper.store import SCHEMA_VERSION, StatusRecord, Store

A = to_checksum_address("0x" + "a1" * 20)
B = to_checksum_address("0x" + "b2" * 20)
C = to_checksum_address("0x" + "c3" * 20)
UINT256_MAX = 2**256 - 1


@pytest.fixture
def path(tmp_path):
    return tmp_path / "keeper.sqlite"


@pytest.fixture
def db(path):
    with Store(path) as s:
        yield s


def test_new_file_is_wal_and_at_the_latest_schema(db, path):
    assert path.exists()
    assert db.schema_version() == SCHEMA_VERSION
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    raw.close()


def test_parent_directory_is_created(tmp_path):
    with Store(tmp_path / "a" / "b" / "k.sqlite") as s:
        assert s.accounts("m") == []


def test_add_accounts_is_idempotent_and_checksums(db):
    assert db.add_accounts("m", [A.lower(), B], 100) == 2
    assert db.add_accounts("m", [A, B.lower()], 100) == 0
    assert db.add_accounts("m", [A, A, C], 90) == 1
    assert db.accounts("m") == sorted([A, B, C])
    assert db.accounts("other") == []


def test_first_and_last_block_widen(db, path):
    db.add_accounts("m", [A], 100)
    db.add_accounts("m", [A], 50)
    db.add_accounts("m", [A], 200)
    raw = sqlite3.connect(path)
    row = raw.execute("SELECT first_block, last_block FROM accounts").fetchone()
    raw.close()
    assert row == (50, 200)


def test_markets_are_separate(db):
    db.record_discovery("one", [A], 10)
    db.record_discovery("two", [B], 20)
    assert (db.accounts("one"), db.accounts("two")) == ([A], [B])
    assert (db.get_checkpoint("one"), db.get_checkpoint("two")) == (10, 20)


def test_checkpoint(db):
    assert db.get_checkpoint("m") is None
    db.set_checkpoint("m", 10)
    db.set_checkpoint("m", 25)
    assert db.get_checkpoint("m") == 25
    db.set_checkpoint("m", 20)  # backwards is allowed: re-scan after a reorg
    assert db.get_checkpoint("m") == 20


def test_resume_after_reopening_the_file(path):
    with Store(path) as s:
        s.record_discovery("m", [A, B], 1_000)
        s.record_discovery("m", [C], 2_000)
        s.set_status("m", A, Status.AT_RISK, 1_05 * 10**16, 2_000)
    with Store(path) as s:
        assert s.get_checkpoint("m") == 2_000
        assert s.accounts("m") == sorted([A, B, C])
        assert s.get_status("m", A) == StatusRecord(Status.AT_RISK, 1_05 * 10**16, 2_000)
        assert s.schema_version() == SCHEMA_VERSION


def test_record_discovery_is_atomic(path):
    """A failure in the middle of the transaction leaves neither accounts nor checkpoint."""
    with Store(path) as s:
        s.record_discovery("m", [A], 100)

        def accounts_then_crash():
            yield B
            yield C
            raise RuntimeError("node went away")

        with pytest.raises(RuntimeError, match="node went away"):
            s.record_discovery("m", accounts_then_crash(), 200)
        assert s.accounts("m") == [A]
        assert s.get_checkpoint("m") == 100
    with Store(path) as s:  # and nothing half-written on disk either
        assert s.accounts("m") == [A]
        assert s.get_checkpoint("m") == 100


def test_bad_account_aborts_the_whole_batch(db):
    with pytest.raises(ValueError):
        db.record_discovery("m", [A, "0x1234"], 100)
    assert db.accounts("m") == []
    assert db.get_checkpoint("m") is None


def test_bad_block_is_refused(db):
    for bad in (-1, "5", True, None):
        with pytest.raises(ValueError, match="block must be a non-negative int"):
            db.record_discovery("m", [A], bad)
    assert db.get_checkpoint("m") is None


def test_status_round_trip_with_huge_ints(db):
    assert db.get_status("m", A) is None
    db.set_status("m", A, Status.SAFE, UINT256_MAX, 5)
    db.set_status("m", B.lower(), "liquidatable", 9 * 10**17, 6)
    db.set_status("m", C, Status.SAFE, None, 7)  # no debt
    assert db.get_status("m", A) == StatusRecord(Status.SAFE, UINT256_MAX, 5)
    assert db.get_status("m", B) == StatusRecord(Status.LIQUIDATABLE, 9 * 10**17, 6)
    db.set_status("m", A, Status.WATCH, 2**200, 8)
    assert db.statuses("m") == {
        A: StatusRecord(Status.WATCH, 2**200, 8),
        B: StatusRecord(Status.LIQUIDATABLE, 9 * 10**17, 6),
        C: StatusRecord(Status.SAFE, None, 7),
    }


def test_unknown_status_is_refused(db):
    with pytest.raises(ValueError):
        db.set_status("m", A, "fine", 1, 1)
    assert db.get_status("m", A) is None


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=UINT256_MAX))
def test_any_uint256_health_factor_survives(tmp_path_factory, hf):
    with Store(tmp_path_factory.mktemp("hf") / "k.sqlite") as s:
        s.set_status("m", A, Status.WATCH, hf, 1)
        assert s.get_status("m", A).hf_wad == hf


def test_migrations_run_once_by_version(path, monkeypatch):
    with Store(path):
        pass
    extra = "CREATE TABLE alerts (market TEXT NOT NULL, account TEXT NOT NULL);"
    monkeypatch.setattr(store_module, "_MIGRATIONS", (*store_module._MIGRATIONS, extra))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with Store(path) as s:
        assert s.schema_version() == SCHEMA_VERSION + 1
    with Store(path) as s:  # not applied twice (CREATE TABLE would fail)
        assert s.schema_version() == SCHEMA_VERSION + 1


def test_failed_migration_leaves_the_old_version(path, monkeypatch):
    with Store(path) as s:
        s.record_discovery("m", [A], 1)
    broken = "CREATE TABLE alerts (x TEXT); THIS IS NOT SQL;"
    monkeypatch.setattr(store_module, "_MIGRATIONS", (*store_module._MIGRATIONS, broken))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(ConfigError, match="migration to schema version 2 failed"):
        Store(path)
    monkeypatch.undo()
    with Store(path) as s:
        assert s.schema_version() == SCHEMA_VERSION
        assert s.accounts("m") == [A]
        raw = sqlite3.connect(path)
        assert raw.execute("SELECT name FROM sqlite_master WHERE name='alerts'").fetchone() is None
        raw.close()


def test_newer_schema_is_refused(path):
    with Store(path):
        pass
    raw = sqlite3.connect(path)
    raw.execute("UPDATE schema_version SET version = 99")
    raw.commit()
    raw.close()
    with pytest.raises(ConfigError, match="schema version 99 is newer") as info:
        Store(path)
    assert info.value.exit_code == 2


def test_a_file_that_is_not_a_database(path):
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="not a usable keeper database"):
        Store(path)


async def test_safe_from_a_worker_thread(db):
    await asyncio.gather(
        *(asyncio.to_thread(db.record_discovery, "m", [a], n) for n, a in enumerate((A, B, C)))
    )
    assert db.accounts("m") == sorted([A, B, C])
    assert db.get_checkpoint("m") in (0, 1, 2)
