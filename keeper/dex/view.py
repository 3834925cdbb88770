"""Capital-free liquidation inside ``keeper run``, pure: what the planners see of the DEX at a
tick and the capital-free side of a ``Liquidate`` (its quote, its one transaction, its
realized profit).

::

    ctx.dex                                   # DexView, read by keeper.dex.reader once per tick
    routes = ctx.dex.routes(collateral, debt) # one hop at 0.05% and 0.3%, two hops via any token
    d = capital_free_decision(...)            # a Liquidate whose quote is a CapitalFree
    better(own, d)                            # the one that nets more USD e8 (ties: own capital)
    steps(d)                                  # one TxStep to KeeperLiquidator (no approvals)
    outcome(d, receipts)                      # the contract's Liquidated event -> Outcome

``minProfit`` sent to the contract is the planned profit less ``SLACK_BPS`` of it: the plan is
made at the tick's block and mined a block or two later, and a few seconds of interest move
a capped Aave or a by-shares Morpho liquidation by some wei. An adverse move beyond the
slack (the pools moved against the route) makes the simulation revert: nothing is sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from keeper.dex.capital_free import FlashSource, PoolKey, candidate_routes, pick
from keeper.dex.flash_plans import FlashLiquidation
from keeper.dex.liquidator import FLASH_AAVE, FLASH_MORPHO, FLASH_NONE, FLASH_UNISWAP, realized_profit
from keeper.dex.route import Route
from keeper.dex.v3_math import V3MathError
from keeper.dex.v3_pool import PoolState, swap_exact_input
from keeper.model import Liquidate, Outcome, TxStep

SLACK_BPS = 10  # minProfit = 99.9% of the planned profit
DEADLINE_S = 600  # the swap's deadline, after the tick's block
FLASH_NAMES = {FLASH_NONE: "none", FLASH_AAVE: "Aave flashLoanSimple",
               FLASH_MORPHO: "Morpho flashLoan", FLASH_UNISWAP: "Uniswap V3 flash"}


@dataclass(frozen=True, slots=True)
class FlashLender:
    """A protocol that lends for one transaction: Aave (each token held by its aToken, a
    premium) or Morpho Blue (every token it holds, free). Adapters declare theirs."""

    source: int  # FLASH_AAVE | FLASH_MORPHO
    lender: str
    holders: tuple[tuple[str, str], ...] = ()  # (token, holder) when not the lender itself

    def holder_of(self, token: str) -> str | None:
        """Who holds the lender's ``token`` (None: it does not lend it)."""
        if not self.holders:
            return self.lender
        return next((h for t, h in self.holders if t.lower() == token.lower()), None)


@dataclass(frozen=True, slots=True)
class DexView:
    """The DEX at one block: pool states (exact V3 math), lenders of each token, the contract."""

    contract: str  # KeeperLiquidator
    block: int
    deadline: int  # unix seconds, for the router
    pools: Mapping[PoolKey, PoolState]
    sources: Mapping[str, tuple[FlashSource, ...]]  # lower-case token -> who lends it
    middles: tuple[str, ...] = ()  # tokens a two-hop route may go through
    slack_bps: int = SLACK_BPS

    def routes(self, token_in: str, token_out: str) -> list[Route]:
        return candidate_routes(token_in, token_out, self.middles)

    def sources_for(self, token: str) -> list[FlashSource]:
        return list(self.sources.get(token.lower(), ()))


@dataclass(frozen=True, slots=True)
class CapitalFree:
    """A Liquidate's quote when it goes through KeeperLiquidator."""

    contract: str
    liq: FlashLiquidation
    route: str  # what the actions table records
    profit_decimals: int
    profit_price_usd_e8: int  # the profit token's price at the tick (values the realized profit)
    own: object = None  # the protocol's own-capital quote, when there was one (for the record)


def describe(liq: FlashLiquidation, symbols: Mapping[str, str] | None = None) -> str:
    """E.g. "capital-free: flash Morpho flashLoan 1500 USDC (0xBBBB...); sell 2 via WETH
    -0.05%-> USDC", or "capital-free: no flash loan (Morpho liquidate callback); ..."."""
    p, names = liq.plan, symbols or {}
    token = names.get(liq.profit_token.lower(), liq.profit_token)
    flash = (f"flash {FLASH_NAMES[p.flash.source]} {p.flash.amount} {token} ({p.flash.lender})"
             if p.flash.source != FLASH_NONE else "no flash loan (Morpho liquidate callback)")
    return f"capital-free: {flash}; sell {p.amount_in} via {p.route.describe(names)}"


def value_usd(amount: int, price_usd_e8: int, decimals: int) -> int:
    return amount * price_usd_e8 // 10**decimals


def capital_free_decision(own: Liquidate | None, liq: FlashLiquidation | None, dex: DexView, *,
                          key: str, protocol: str, accounts: tuple[str, ...], block: int, hf: int,
                          price_usd_e8: int, decimals: int, gas_usd_e8: int, min_profit_usd_e8: int,
                          symbols: Mapping[str, str] | None = None) -> Liquidate | None:
    """``own`` or the capital-free ``liq``, whichever nets more USD e8 after gas (``pick``);
    None when neither reaches ``min_profit_usd_e8``."""
    cf = None
    if liq is not None:
        profit = value_usd(liq.expected_profit, price_usd_e8, decimals) - gas_usd_e8
        if profit >= min_profit_usd_e8:
            route = describe(liq, symbols)
            cf = Liquidate(key, protocol, accounts, block, hf,
                           CapitalFree(dex.contract, liq, route, decimals, price_usd_e8,
                                       own.quote if own is not None else None),
                           liq.expected_profit, profit, gas_usd_e8,
                           f"{route}; profit {liq.expected_profit} of {liq.profit_token} "
                           f"(minProfit {liq.min_profit}), {profit} USD e8 after gas {gas_usd_e8}",
                           route)
    choice = pick(own.profit_usd_e8 if own is not None else None, cf.profit_usd_e8 if cf is not None else None)
    if choice == "capital_free":
        return cf
    return own if own is not None and own.profit_usd_e8 >= min_profit_usd_e8 else None


def after_swap(dex: DexView | None, d: Liquidate | None) -> DexView | None:
    """The DEX once ``d``'s sale is done: its route's pools moved by the exact V3 math (the
    same swaps the pools will run), so that the next capital-free liquidation of the same
    burst, simulated and mined after it, is planned on the pools it will meet. ``dex`` itself
    when ``d`` sells nothing (own capital, or no decision)."""
    if dex is None or d is None or not isinstance(d.quote, CapitalFree):
        return dex
    plan = d.quote.liq.plan
    pools, amount = dict(dex.pools), plan.amount_in
    try:
        for h in plan.route.hops:
            done = swap_exact_input(pools[h.key()], h.zero_for_one(), amount)
            pools[h.key()], amount = done.pool, done.amount_out
    except (KeyError, V3MathError):  # planned on these very pools: not expected
        return dex
    return replace(dex, pools=pools)


def better(own: Sequence[Liquidate], cf: Sequence[Liquidate]) -> list[Liquidate]:
    """Merge per account set: the capital-free decision replaces the own-capital one when it
    was chosen for the same accounts."""
    chosen = {d.accounts: d for d in own}
    chosen.update({d.accounts: d for d in cf})
    return list(chosen.values())


def steps(d: Liquidate, purpose: str) -> list[TxStep] | None:
    """One call to KeeperLiquidator, no approvals (it spends no operator tokens); None when
    ``d`` is an own-capital liquidation."""
    q = d.quote
    if not isinstance(q, CapitalFree):
        return None
    return [TxStep(q.contract, q.liq.calldata, f"{purpose} via KeeperLiquidator ({q.route})")]


def outcome(d: Liquidate, receipts) -> Outcome | None:
    """The ``Liquidated`` event's profit (profit-token units) as ``realized``, valued in USD
    e8 at the tick's price of the profit token; None for an own-capital liquidation."""
    q = d.quote
    if not isinstance(q, CapitalFree):
        return None
    for r in receipts:
        profit = realized_profit(r.logs, q.contract)
        if profit is not None:
            return Outcome(True, profit, value_usd(profit, q.profit_price_usd_e8, q.profit_decimals),
                           f"profit in {q.liq.profit_token} (minProfit {q.liq.min_profit})")
    return Outcome(False, detail="mined without the liquidator's Liquidated event")
