"""keeper.respond._candidates: which positions a block tick's decisions look at."""

from __future__ import annotations

from types import SimpleNamespace

from keeper.respond import _candidates


def _watch(ahead):
    positions = {f"0x{i:040x}": SimpleNamespace(account=f"0x{i:040x}") for i in range(10)}
    return SimpleNamespace(ahead=ahead, positions=positions)


def test_with_triggers_only_the_liquidatable_own_and_recomputed_accounts_by_account():
    a = [f"0x{i:040x}" for i in range(10)]
    w = _watch(SimpleNamespace(liquidatable={a[7], a[2]}, mine={a[5]}))
    got = [p.account for p in _candidates(w, {a[9], a[2], "0x" + "f" * 40})]  # one not held: skipped
    assert got == [a[2], a[5], a[7], a[9]]


def test_without_triggers_or_without_names_every_position():
    a = [f"0x{i:040x}" for i in range(10)]
    assert [p.account for p in _candidates(_watch(None), {a[1]})] == a
    w = _watch(SimpleNamespace(liquidatable={a[3]}, mine=set()))
    assert [p.account for p in _candidates(w, None)] == a  # a full scan's after_tick: all of them
