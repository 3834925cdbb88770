"""Pure and generic: positions + policy -> which accounts are due, and the decisions each
protocol's planners return for them. No IO; decisions are plain values (keeper.model.TopUp,
keeper.model.Liquidate) that the dry-run path, the executors and the tests can look at.

* Top-up: an account of the user's own (``[[protect]]``, optionally for one market) fell below
  its ``trigger_hf``: ``adapter.plan_top_up`` sizes the smallest supply or repay (in the
  configured order) that brings it back to ``target_hf``, or the most the wallet can do.
  When no action can be paid at all, the account is reported as a refusal, never dropped
  silently.
* Liquidate: liquidatable positions of other accounts go to ``adapter.plan_liquidations``,
  which keeps those that pay more than ``min_profit`` (USD e8) after gas; each one's
  follow-ups of the same account (keeper.followups) come right behind it.

A position whose prices are unreliable (stale, zero or negative feed) gets no decision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from keeper.followups import with_followups
from keeper.model import Address, Decision, Position, ProtectRule, Status


@dataclass(frozen=True, slots=True)
class Policy:
    protect: Mapping[str, ProtectRule]  # lower-case account -> rule
    liquidate: bool = False
    min_profit_usd_e8: int = 0
    liquidation_gas: int = 600_000
    gas_coin: str = "WETH"  # symbol of the gas coin's wrapped token, to price gas in USD
    receive_a_token: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    """A protected account below its trigger that no configured action can help."""

    account: Address
    health_factor_wad: int
    reason: str


def top_ups_due(policy: Policy, market_name: str, positions: Iterable[Position],
                usd_of: Callable[[str], int | None] | None = None) -> list[tuple[Position, ProtectRule]]:
    """Own accounts below their trigger on this market (a rule with ``market`` set applies
    to that configured market only), or whose stop-loss asset is priced (``usd_of``: SYMBOL ->
    USD e8) at or below the rule's ``close_below``."""
    out = []
    for p in positions:
        rule = policy.protect.get(p.account.lower())
        if (rule is None or p.health_factor_wad is None or not p.reliable
                or rule.market not in (None, market_name)):
            continue
        closing = (rule.close_below is not None and usd_of is not None
                   and (usd_of(rule.close_below[0]) or 2**256) <= rule.close_below[1])
        if p.health_factor_wad < rule.trigger_hf_wad or closing or _boosting(p, rule):
            out.append((p, replace(rule, closing=True) if closing else rule))
    return out


def _boosting(p: Position, rule: ProtectRule) -> bool:
    """Above the rule's ``boost_above_hf``: re-leverage to the target (optional rule)."""
    return rule.boost_above_wad is not None and (p.health_factor_wad or 0) > rule.boost_above_wad


def liquidations_due(policy: Policy, positions: Iterable[Position]) -> list[Position]:
    """Liquidatable, reliable positions of accounts that are not the user's own."""
    if not policy.liquidate:
        return []
    return [p for p in positions if p.status == Status.LIQUIDATABLE and p.reliable
            and p.account.lower() not in policy.protect]


def decide(adapter, market, tops: list[tuple[Position, ProtectRule]], due: list[Position],
           accounts: Mapping[Address, object], wallet: Mapping[Address, int],
           ctx) -> tuple[list[Decision], list[Refusal]]:
    """Decisions for one market at its block. ``ctx`` (a PlanContext) is None when gas
    cannot be priced: then nothing is liquidated."""
    out: list[Decision] = []
    refused: list[Refusal] = []
    for pos, rule in tops:
        acct = accounts.get(pos.account)
        d = adapter.plan_top_up(market, acct, rule, wallet) if acct is not None else None
        if d is None and not _boosting(pos, rule):  # no boost to make is nothing to alert about
            held = ", ".join(f"{k}:{s}" for k, s in rule.actions)
            refused.append(Refusal(pos.account, pos.health_factor_wad or 0,
                                   f"cannot protect: the wallet cannot pay any of {held} on this market"))
        elif d is not None:
            out.append(d)
    if ctx is not None:  # someone is due, or the protocol sells something (adapter.sells)
        # each liquidation's follow-ups of the same account (keeper.followups) right behind it
        out.extend(with_followups(adapter, market, adapter.plan_liquidations(market, due, accounts, ctx),
                                  accounts, ctx))
    return out, refused


def policy_from(cfg) -> Policy:  # cfg: keeper.config.Config (not imported: decide stays pure)
    rules = {
        p.account.lower(): ProtectRule(p.account, p.trigger_hf, p.target_hf, tuple(p.parsed_actions()),
                                       p.market, p.contract, p.max_slippage_bps, cfg.dex.uniswap_v3_factory,
                                       p.close_below(), boost_above_wad=p.boost_above_hf)
        for p in cfg.protect
    }
    lq = cfg.liquidator
    return Policy(rules, lq.enabled, lq.min_profit_usd_e8, lq.liquidation_gas, cfg.gas_coin,
                  lq.receive_a_token)
