"""What became of an action (a Liquidate or a TopUp), and its idempotency key: shared by the
two send paths (keeper.executors.actions, keeper.executors.burst)."""

from __future__ import annotations

from dataclasses import dataclass

from keeper.model import Decision, Liquidate


@dataclass(frozen=True, slots=True)
class ActionResult:
    action_key: str
    kind: str  # "liquidate" | "top_up"
    result: str  # "done" | "lost" | "dry_run" | "failed" | "skipped"
    tx_hash: str | None = None
    expected: int | None = None  # liquidate: profit USD e8 after gas; top_up: health factor (wad)
    realized: int | None = None
    detail: str = ""


def action_key(d: Decision) -> str:
    kind = "liq" if isinstance(d, Liquidate) else "topup"
    who = d.accounts[0] if d.accounts else "protocol"  # a purchase from the protocol names no one
    # a follow-up of the same account and block (keeper.followups) is its own action: "#2", "#3"
    # (not ":n", which names an action's later steps); getattr: decisions pickled before it
    nth = getattr(d, "follows", 0) if isinstance(d, Liquidate) else 0
    return f"{kind}:{d.market}:{who}:{d.block}" + (f"#{nth + 1}" if nth else "")
