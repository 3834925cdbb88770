"""Capital-free liquidation planning, pure: the flash fee, the best route, the exact profit.

A capital-free liquidation borrows ``repay`` of the debt token for one transaction, gets
``seized`` collateral from the protocol, sells it along a Uniswap V3 route and repays the
loan; what is left of the debt token is the profit::

    profit = quote_route(route, pools, seized) - repay - flash_fee

``net_profit_base`` values a profit after gas at the price book's prices and ``pick``
chooses own capital or capital-free by that number.

``plan(...)`` tries every flash source that holds enough of the debt token and every route
(one hop at each fee tier, two hops through each middle token) and returns the most
profitable, or None when nothing is left after the fee. A Uniswap pool lent from is locked
for the transaction, so routes through it are skipped for that source.

Flash fees, as each lender charges them:
* Aave V3 ``flashLoanSimple``: ``amount.percentMul(FLASHLOAN_PREMIUM_TOTAL)`` (FlashLoanLogic);
* Morpho Blue ``flashLoan``: free;
* Uniswap V3 ``flash``: ``FullMath.mulDivRoundingUp(amount, fee, 1e6)`` (UniswapV3Pool.flash).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product

from keeper.dex.liquidator import FLASH_AAVE, FLASH_MORPHO, FLASH_NONE, FLASH_UNISWAP, Flash
from keeper.dex.route import Route, RouteError, quote_route
from keeper.dex.v3_math import FEE_DENOMINATOR, V3MathError, mul_div_rounding_up
from keeper.dex.v3_pool import PoolState
from keeper.protocols.aave_v3.math import percent_mul

PoolKey = tuple[str, str, int]
DEFAULT_FEES = (500, 3000)


@dataclass(frozen=True, slots=True)
class FlashSource:
    """A lender that could lend the debt token: ``available`` is what it holds of it;
    ``fee`` is the Aave premium in bps, or the Uniswap pool's fee in pips (Morpho: 0)."""

    source: int
    lender: str
    available: int
    fee: int = 0

    def fee_for(self, amount: int) -> int:
        if self.source == FLASH_AAVE:
            return percent_mul(amount, self.fee)
        if self.source == FLASH_UNISWAP:
            return mul_div_rounding_up(amount, self.fee, FEE_DENOMINATOR)
        return 0  # Morpho Blue, or no flash at all


NO_FLASH = FlashSource(FLASH_NONE, "0x0000000000000000000000000000000000000000", 2**256 - 1)


@dataclass(frozen=True, slots=True)
class CapitalFreePlan:
    route: Route
    flash: Flash
    amount_in: int  # collateral sold
    amount_out: int  # debt token received from the route
    repay: int  # debt token the protocol takes
    flash_fee: int
    profit: int  # in the debt token: amount_out - repay - flash_fee

    def describe(self, symbols: Mapping[str, str] | None = None) -> str:
        kind = {FLASH_NONE: "none", FLASH_AAVE: "Aave flashLoanSimple", FLASH_MORPHO: "Morpho flashLoan",
                FLASH_UNISWAP: "Uniswap V3 flash"}[self.flash.source]
        return f"flash {kind}; sell {self.amount_in} via {self.route.describe(symbols)}; profit {self.profit}"


def candidate_routes(token_in: str, token_out: str, middles: Iterable[str],
                     fees: Sequence[int] = DEFAULT_FEES) -> list[Route]:
    """Every single hop at ``fees`` and every two-hop route through a middle token."""
    routes = [Route.single(token_in, f, token_out) for f in fees]
    for mid in middles:
        if mid.lower() in (token_in.lower(), token_out.lower()):
            continue
        routes += [Route.two(token_in, f1, mid, f2, token_out) for f1, f2 in product(fees, fees)]
    return routes


def best_route(routes: Iterable[Route], pools: Mapping[PoolKey, PoolState], amount_in: int,
               avoid: str | None = None) -> tuple[Route, int] | None:
    """The route with the largest exact output (ties: the first), skipping routes through
    pool ``avoid`` and routes with a missing pool or one that would revert."""
    best: tuple[Route, int] | None = None
    for r in routes:
        if avoid and any((p := pools.get(h.key())) is not None and p.address.lower() == avoid.lower()
                         for h in r.hops):
            continue
        try:
            out = quote_route(r, pools, amount_in)
        except (RouteError, V3MathError):
            continue
        if best is None or out > best[1]:
            best = (r, out)
    return best


def plan(seized: int, repay: int, routes: Sequence[Route], pools: Mapping[PoolKey, PoolState],
         sources: Sequence[FlashSource]) -> CapitalFreePlan | None:
    """The most profitable (flash source, route) for selling ``seized`` to cover ``repay``."""
    best: CapitalFreePlan | None = None
    for src in sources:
        if src.available < repay:
            continue
        found = best_route(routes, pools, seized, src.lender if src.source == FLASH_UNISWAP else None)
        if found is None:
            continue
        route, out = found
        fee = src.fee_for(repay)
        p = CapitalFreePlan(route, Flash(src.source, src.lender, repay if src.source != FLASH_NONE else 0),
                            seized, out, repay, fee, out - repay - fee)
        if best is None or p.profit > best.profit:
            best = p
    if best is None or best.profit <= 0:
        return None
    return best


def net_profit_base(profit: int, token_price_base: int, token_decimals: int, gas: int,
                    gas_price_wei: int, native_price_base: int) -> int:
    """A liquidation's profit in the price book's base unit (e.g. 1e8 USD) after gas:
    the profit-token amount valued down, the gas (native coin, 18 decimals) valued up."""
    value = profit * token_price_base // 10**token_decimals
    cost = -(-gas * gas_price_wei * native_price_base // 10**18)
    return value - cost


def pick(own_capital_base: int | None, capital_free_base: int | None) -> str | None:
    """"own" or "capital_free", whichever nets more (``net_profit_base``; None = not possible),
    or None when neither is positive. Ties go to own capital (no flash, no swap to trust)."""
    best, choice = 0, None
    for name, value in (("own", own_capital_base), ("capital_free", capital_free_base)):
        if value is not None and value > best:
            best, choice = value, name
    return choice


def hop_pool_keys(routes: Iterable[Route]) -> set[PoolKey]:
    """Every pool the routes go through (what to read before planning)."""
    return {h.key() for r in routes for h in r.hops}


__all__ = ["NO_FLASH", "CapitalFreePlan", "FlashSource", "best_route", "candidate_routes",
           "hop_pool_keys", "net_profit_base", "pick", "plan"]
