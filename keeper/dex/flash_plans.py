"""Protocol quotes -> capital-free liquidations (a plan and its calldata), pure.

Each function takes what keeper's exact protocol math already computed (Aave's
``LiquidationQuote``, Morpho's ``LiquidationQuote``, Comet's absorb + store-front amounts),
sells the collateral it yields along the best route (``capital_free.plan``) and returns the
``FlashLiquidation``: the plan, the calldata for ``KeeperLiquidator`` and the profit token.
``min_profit`` defaults to the planned profit less ``slack_bps`` of it (default 0: exactly
the plan): the contract then reverts unless it earns that much, so any adverse move
in between fails the simulation. The slack absorbs what a few seconds of interest can
change between the simulated block and the mined one (an Aave liquidation capped by the
user's collateral takes all of it, which grows with time, and repays accordingly).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from keeper.dex.capital_free import NO_FLASH, CapitalFreePlan, FlashSource, PoolKey, plan
from keeper.dex.liquidator import (
    AaveCall,
    CometCall,
    MorphoCall,
    encode_aave,
    encode_comet,
    encode_morpho,
)
from keeper.dex.route import Route
from keeper.dex.v3_pool import PoolState
from keeper.units import BPS
from keeper.protocols.aave_v3.liquidation import LiquidationQuote, plan_liquidation
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState


def aave_exact_cover(market: AaveMarketState, acct: AaveAccount, quote: LiquidationQuote,
                     max_rounds: int = 8) -> LiquidationQuote:
    """The quote re-planned with ``debtToCover`` = what it repays, until both agree.

    A capital-free liquidation flashes exactly the debt it repays and passes that amount as
    ``debtToCover``. Aave recomputes the collateral from it, and when the first quote was
    capped by the user's collateral, the smaller cover can land in the uncapped branch with
    a slightly different collateral (a few wei): plan with the cover that will be sent."""
    q = quote
    for _ in range(max_rounds):
        again = plan_liquidation(market, acct, q.collateral_asset, q.debt_asset, q.debt_to_repay)
        if again.debt_to_repay == q.debt_to_repay:
            return again
        q = again
    raise ValueError("debtToCover did not settle")  # never seen: each round can only lower it


@dataclass(frozen=True, slots=True)
class FlashLiquidation:
    protocol: str  # "aave_v3" | "morpho_blue" | "compound_v3"
    account: str
    plan: CapitalFreePlan
    profit_token: str
    min_profit: int
    calldata: bytes
    call: AaveCall | MorphoCall | CometCall  # the protocol call inside (also what own capital would send)

    @property
    def expected_profit(self) -> int:
        return self.plan.profit


def _min_profit(p: CapitalFreePlan, min_profit: int | None, slack_bps: int) -> int:
    return p.profit - p.profit * slack_bps // BPS if min_profit is None else min_profit


def aave(pool: str, user: str, collateral: str, debt: str, debt_to_repay: int, collateral_received: int,
         routes: Sequence[Route], pools: Mapping[PoolKey, PoolState], sources: Sequence[FlashSource],
         deadline: int, min_profit: int | None = None, slack_bps: int = 0) -> FlashLiquidation | None:
    """Aave V3: flash ``debt_to_repay``, liquidationCall with exactly that as ``debtToCover``
    (plan it with ``aave_exact_cover``), sell ``collateral_received``. None when no route
    pays after the fee."""
    p = plan(collateral_received, debt_to_repay, routes, pools, sources)
    if p is None:
        return None
    want = _min_profit(p, min_profit, slack_bps)
    call = AaveCall(pool, collateral, debt, user, debt_to_repay)
    data = encode_aave(call, p.flash, p.route, deadline, debt, want)
    return FlashLiquidation("aave_v3", user, p, debt, want, data, call)


def morpho(morpho_address: str, market: tuple[str, str, str, str, int], borrower: str,
           seized_assets: int, repaid_shares: int, by_shares: bool, repaid_assets: int,
           routes: Sequence[Route], pools: Mapping[PoolKey, PoolState], deadline: int,
           min_profit: int | None = None, slack_bps: int = 0) -> FlashLiquidation | None:
    """Morpho Blue: ``liquidate`` by shares (``by_shares``) or by seized assets, as the quote
    was computed; the callback sells the collateral and Morpho pulls ``repaid_assets``."""
    p = plan(seized_assets, repaid_assets, routes, pools, [NO_FLASH])
    if p is None:
        return None
    loan = market[0]
    want = _min_profit(p, min_profit, slack_bps)
    call = MorphoCall(morpho_address, market, borrower, 0 if by_shares else seized_assets,
                      repaid_shares if by_shares else 0)
    return FlashLiquidation("morpho_blue", borrower, p, loan, want,
                            encode_morpho(call, p.route, deadline, loan, want), call)


def comet(comet_address: str, accounts: Sequence[str], asset: str, base_token: str, base_amount: int,
          collateral_out: int, routes: Sequence[Route], pools: Mapping[PoolKey, PoolState],
          sources: Sequence[FlashSource], deadline: int,
          min_profit: int | None = None, slack_bps: int = 0) -> FlashLiquidation | None:
    """Compound V3: absorb ``accounts``, flash ``base_amount`` of base, ``buyCollateral`` of
    ``asset`` (``collateral_out`` = quoteCollateral, also the call's ``minAmount``), sell it."""
    p = plan(collateral_out, base_amount, routes, pools, sources)
    if p is None:
        return None
    want = _min_profit(p, min_profit, slack_bps)
    call = CometCall(comet_address, tuple(accounts), asset, collateral_out, base_amount)
    return FlashLiquidation("compound_v3", accounts[0] if accounts else "", p, base_token, want,
                            encode_comet(call, p.flash, p.route, deadline, base_token, want), call)
