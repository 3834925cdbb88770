"""Follow-up liquidations of the same account in the same tick: pure and generic.

A protocol may take only part of a position per call (Aave V3: one collateral/debt pair and,
above HF 0.95, at most half the debt), so an account can need two or three liquidations.
The block tick and the backrun plan one per account; the next one used to wait until the
first was mined (one block later, or two). Here, for each liquidation the market's planner
returns, the adapter's ``after_liquidation`` gives the market and the account as they will
be once it is mined (to the wei, the protocol's own rounding); while the account is still
liquidatable there, the same planner plans the next liquidation on that state, within what
the wallet has left once every liquidation planned before it is paid (their approvals'
amounts: the other accounts' too, which the planners leave to each other likewise) and still
profitable after its own gas, up to ``MAX_PER_ACCOUNT`` per account per tick.

The executors send them in the same burst or backrun, after their predecessor (consecutive
nonces, the decisions ordered by bid: ``by_bid``; one ``eth_simulateV1`` in nonce order runs
each on the state the ones before leave), each its own action (``Liquidate.follows``; action
key ``...#2``, ``#3``).

Own capital only: a capital-free liquidation trades in pools that the previous one has
moved, which the DEX view does not follow (and it shares one lane anyway).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from keeper.health.status import DEFAULT_THRESHOLDS
from keeper.model import Address, Decision, Liquidate, Status, TxStep

MAX_PER_ACCOUNT = 4  # liquidations of one account planned in one tick (two collaterals x two debts)


def with_followups(adapter: Any, market: Any, decisions: Sequence[Decision], accounts: Mapping[Address, Any],
                   ctx: Any, limit: int = MAX_PER_ACCOUNT) -> list[Decision]:
    """``decisions`` with each liquidation's follow-ups right behind it. ``ctx``: the
    PlanContext the decisions were planned with."""
    out: list[Decision] = []
    left: Mapping[Address, int] | None = None

    def remaining() -> Mapping[Address, int]:
        """What the wallet has left once every liquidation planned so far is paid (worked out
        when a first follow-up is planned: most ticks have none)."""
        nonlocal left
        if left is None:
            left = spent(ctx.wallet, [s for d in decisions for s in adapter.encode(d, ctx.sender)])
        return left

    for d in decisions:
        out.append(d)
        if isinstance(d, Liquidate) and len(d.accounts) == 1 and d.lane is None and d.follows == 0:
            chain, after = _chain(adapter, market, d, accounts.get(d.account), ctx, limit, remaining)
            out.extend(chain)
            left = after if after is not None else left
    return by_bid(out) if len(out) > len(decisions) else out  # else the planner's order, as before


def by_bid(decisions: Sequence[Decision]) -> list[Decision]:
    """The order to send in (nonce order): the most profitable first, a follow-up after the
    liquidation it follows. A liquidation's bid grows with its profit (``bid_share_bps``) and a
    node takes one sender's transactions in nonce order, so a follow-up, usually worth less,
    sent before another account's first liquidation would hold that one back behind every
    transaction priced between the two (measured: a competitor's got in first). Others keep
    their place, ahead. Only where follow-ups were planned: elsewhere the planner's order is
    kept (on Morpho Blue one liquidation's bad debt moves the share price the next one was
    planned with; reordered, one of them reverted in simulation)."""
    out: list[Decision] = [d for d in decisions if not isinstance(d, Liquidate)]
    liqs = [(i, d) for i, d in enumerate(decisions) if isinstance(d, Liquidate)]
    after = {(d.accounts, d.follows): (i, d) for i, d in liqs}  # who follows whom
    ready = [(-d.profit_usd_e8, i, d) for i, d in liqs if d.follows == 0]  # a heap; the first of equals
    heapq.heapify(ready)
    while ready:
        _, _, best = heapq.heappop(ready)
        out.append(best)
        if (nxt := after.get((best.accounts, best.follows + 1))) is not None:
            heapq.heappush(ready, (-nxt[1].profit_usd_e8, nxt[0], nxt[1]))
    if len(out) < len(decisions):  # a follow-up whose predecessor is not here: last, in order
        placed = {id(d) for d in out}
        out += [d for d in decisions if id(d) not in placed]
    return out


def _chain(adapter: Any, market: Any, first: Liquidate, acct: Any, ctx: Any, limit: int,
           remaining: Callable[[], Mapping[Address, int]]
           ) -> tuple[list[Liquidate], Mapping[Address, int] | None]:
    """``first``'s follow-ups, paid from what ``remaining()`` says the wallet has left, and
    what is left after them (None: no follow-up was planned, nothing asked)."""
    out: list[Liquidate] = []
    prev, wallet = first, None
    while acct is not None and len(out) + 1 < limit:
        after = adapter.after_liquidation(market, acct, prev)
        if after is None:
            break
        market, acct = after
        pos = adapter.evaluator(market).position(acct, DEFAULT_THRESHOLDS, False)
        if pos.status != Status.LIQUIDATABLE or not pos.reliable:
            break
        wallet = remaining() if wallet is None else wallet
        planned = adapter.plan_liquidations(market, [pos], {first.account: acct},
                                            replace(ctx, wallet=wallet, dex=None))
        nxt = [x for x in planned if isinstance(x, Liquidate) and x.accounts == first.accounts and x.lane is None]
        if not nxt:
            break
        n = len(out) + 1
        prev = replace(nxt[0], follows=n, reason=f"follow-up {n} of {first.account} (state after the "
                                                 f"previous liquidation): {nxt[0].reason}")
        out.append(prev)
        wallet = spent(wallet, adapter.encode(prev, ctx.sender))
    return out, wallet


def spent(wallet: Mapping[Address, int], steps: Sequence[TxStep]) -> dict[Address, int]:
    """The wallet once ``steps`` have paid what their approvals name (keys as the wallet has them)."""
    out = dict(wallet)
    by_lower = {k.lower(): k for k in out}
    for step in steps:
        for ap in step.approvals:
            key = by_lower.get(ap.token.lower())
            if key is not None:
                out[key] = max(0, out[key] - ap.amount)
    return out
