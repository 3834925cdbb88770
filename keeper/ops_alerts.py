"""Alerts for the operator, through the same outbox and channels as position alerts.

Conditions, checked by a job of ``keeper run`` every few seconds:

==========================  ===========================================================
condition                   when
==========================  ===========================================================
``endpoint_down:<i:host>``  an endpoint failed several requests in a row and rests
``wrong_chain:<i:host>``    an endpoint answered another chain id (it serves nothing)
``all_endpoints_down``      no endpoint serves reads
``stale_head``              the head has not moved for ``[monitor] stale_head_s``
``gas_low``                 the signer's balance is below ``[executor] min_gas_balance_wei``
==========================  ===========================================================

Each condition alerts once when it starts (kind = its name) and once when it ends (kind
``<name>_recovered``), on every configured channel. The conditions under way are kept in
the outbox's policy state (market ``keeper``, account = the condition), in the same SQLite
transaction as the alert, so a restart neither repeats an alert nor forgets a recovery.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from keeper.chain.rpc import Rpc
from keeper.errors import SourceError
from keeper.model import Status
from keeper.notify.outbox import StateChange
from keeper.notify.policy import Alert, AlertState, Step

log = structlog.get_logger("keeper.ops")
OPERATOR = "keeper"  # the market and protocol of operator alerts


class OperatorAlerts:
    def __init__(self, rpc: Rpc, notifications: Any, *, stale_head_s: float,
                 gas_address: str | None = None, min_gas_balance_wei: int | None = None):
        self.rpc, self.notifications = rpc, notifications
        self.stale_head_s = stale_head_s
        self.gas_address, self.min_gas_balance_wei = gas_address, min_gas_balance_wei

    async def conditions(self) -> dict[str, str]:
        """What is wrong now: condition -> words."""
        out: dict[str, str] = {}
        eps = self.rpc.endpoints
        for ep in eps:
            if ep.wrong_chain is not None:
                out[f"wrong_chain:{ep.label}"] = (f"endpoint {ep.label} is on chain {ep.wrong_chain}, "
                                                  f"not {self.rpc.chain_id_expected}: it serves nothing")
            elif ep.down:
                out[f"endpoint_down:{ep.label}"] = f"endpoint {ep.label} is down ({ep.last_error})"
        if all(ep.down or ep.wrong_chain is not None for ep in eps):
            out["all_endpoints_down"] = f"no endpoint serves reads ({len(eps)} configured)"
        moved = self.rpc.head_changed_at
        if moved is not None and time.monotonic() - moved > self.stale_head_s:
            out["stale_head"] = (f"no new block for {time.monotonic() - moved:.0f} s "
                                 f"(head {self.rpc.head}, limit {self.stale_head_s:g} s)")
        if self.gas_address is not None and self.min_gas_balance_wei is not None:
            try:
                balance = int(await self.rpc.request("eth_getBalance", [self.gas_address, "latest"]), 16)
            except SourceError:
                balance = None  # unknown now: the endpoint conditions say why
            if balance is not None and balance < self.min_gas_balance_wei:
                out["gas_low"] = (f"gas wallet {self.gas_address} holds {balance} wei, "
                                  f"below min_gas_balance_wei {self.min_gas_balance_wei}")
        return out

    def _active(self) -> set[str]:
        return self.notifications.outbox.accounts_with_state(OPERATOR)

    async def check(self, now: float | None = None) -> list[Alert]:
        """Alert the conditions that started and those that ended; returns the new alerts."""
        now_s = int(time.time() if now is None else now)
        current = await self.conditions()
        active = self._active()
        block = max(self.rpc.head, 0)
        changes: list[StateChange] = []
        for channel in self.notifications.rules:
            for cond, words in current.items():
                if cond not in active:
                    alert = _alert(cond, cond.split(":")[0], words, Status.AT_RISK, block, now_s)
                    changes.append(StateChange(channel, OPERATOR, cond,
                                               Step(alert, AlertState(Status.AT_RISK, now_s, block))))
            for cond in active - set(current):
                kind = cond.split(":")[0] + "_recovered"
                alert = _alert(cond, kind, f"{cond.replace(':', ' ', 1)}: recovered", Status.SAFE, block, now_s)
                changes.append(StateChange(channel, OPERATOR, cond, Step(alert, None)))
        new = self.notifications.outbox.record(changes, now_s)
        for alert in new:
            log.warning("operator.alert", kind=alert.kind, condition=alert.account, detail=alert.action)
        return new


def _alert(cond: str, kind: str, words: str, status: Status, block: int, now: int) -> Alert:
    return Alert(key=f"{OPERATOR}:{cond}:{kind}:{now}", kind=kind, market=OPERATOR, protocol=OPERATOR,
                 account=cond, status=status, previous=None, health_factor_wad=None,
                 collateral_base=0, debt_base=0, drop_to_liquidation_bps=None, block=block,
                 action=words, created_at=now)
