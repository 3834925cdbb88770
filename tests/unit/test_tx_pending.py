"""action_pending: decisions round-trip exactly through the store; nothing but keeper's own
classes and plain builtins is ever rebuilt from it."""

from __future__ import annotations

import os
import pickle

import pytest

from keeper.executors.pending import PendingActions, loads
from keeper.model import Liquidate, TopUp, TopUpPlan
from keeper.store import Store

COMET = "0x0000000000000000000000000000000000000C0C"
WETH = "0x0000000000000000000000000000000000000E7E"
ALICE = "0x00000000000000000000000000000000000A11CE"


def decisions():
    buy = Liquidate("comet", "compound_v3", (ALICE,), 12, 10**18 - 1, ((WETH, 2**200, 7),), 7, -5, 3, "r")
    only = Liquidate("comet", "compound_v3", (), 13, 0, ((WETH, 1, 1),), 1, 9, 3, "buy reserves")
    top = TopUp("aave", "aave_v3", ALICE, 14, 10**18, TopUpPlan("repay", WETH, 10**30, 2**256 - 1, True, None), "r")
    return [buy, only, top]


def test_decisions_round_trip_and_are_forgotten_when_done(tmp_path):
    store = Store(tmp_path / "k.sqlite")
    pending = PendingActions(store)
    for i, d in enumerate(decisions()):
        pending.save(f"k{i}", d)
    store.close()
    again = PendingActions(Store(tmp_path / "k.sqlite"))  # a restart reads them back
    assert again.all() == [(f"k{i}", d) for i, d in enumerate(decisions())]
    again.done("k1")
    assert [k for k, _ in again.all()] == ["k0", "k2"]


class _Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def test_only_keeper_classes_are_rebuilt():
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        loads(pickle.dumps(_Evil()))
    with pytest.raises(pickle.UnpicklingError, match="action_key"):
        loads(pickle.dumps(("x", __import__("keeper.executors.actions", fromlist=["action_key"]).action_key)))
