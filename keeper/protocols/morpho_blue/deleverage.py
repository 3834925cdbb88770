"""Morpho Blue deleverage, pure: repay a borrower's loan from its own collateral through
keeper's KeeperProtection contract (``deleverageMorpho``). No IO, ints only.

The contract flash-borrows ``repay`` of the loan token from Morpho (free), repays it for the
borrower (``Morpho.repay`` by assets, or by shares for all of it), withdraws ``withdraw`` of
the collateral through the borrower's ``setAuthorization(contract, true)``, sells it on one
Uniswap V3 pool and gives Morpho its loan back; what the swap paid above that goes to the
borrower. So the swap must pay ``repay``; the position after is the position after
``apply_repay`` with ``withdraw`` less collateral, on the market accrued to the mining time
(sized ``HORIZON_S`` later). Its health factor is ``Morpho._isHealthy``'s
``maxBorrow * 1e18 / borrowed`` (keeper.protocols.morpho_blue.math.health), which the
contract recomputes on chain.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from eth_abi import encode

from keeper.chain.abi import selector
from keeper.dex.deleverage import (
    DEADLINE_S, HORIZON_S, DexInputs, impact_bps, pairs_of, single_routes, smallest_input,
)  # fmt: skip
from keeper.dex.route import quote_route
from keeper.model import Address, ProtectRule, TopUp, TopUpPlan
from keeper.protocols.morpho_blue.math import ORACLE_PRICE_SCALE, MarketParams, MorphoMarket, MorphoPosition, accrue, health
from keeper.protocols.morpho_blue.topup import MorphoTopUpRevert, apply_repay, first_true, full_repay_assets
from keeper.units import UINT256_MAX

DELEVERAGE_MORPHO = ("deleverageMorpho((address,(address,address,address,address,uint256),address,uint256,"
                     "uint256,uint256,uint24,uint256,uint256,uint256))")


@dataclass(frozen=True, slots=True)
class MorphoDeleverageQuote:
    morpho: Address
    params: MarketParams
    contract: Address
    borrower: Address
    repay: int  # loan token units, flash-borrowed from Morpho
    repay_shares: int  # non-zero: repay all of it by shares
    withdraw: int  # collateral units sold
    fee: int  # the Uniswap V3 pool's fee tier
    expected_out: int
    expected_hf_wad: int
    oracle_out: int  # the Morpho oracle's value of ``withdraw`` in loan units
    min_hf_wad: int
    max_slippage_bps: int
    deadline: int = 0

    @property
    def collateral(self) -> Address:
        return self.params.collateral_token

    @property
    def debt(self) -> Address:
        return self.params.loan_token

    @property
    def price_impact_bps(self) -> int:
        return impact_bps(self.oracle_out, self.expected_out)


def _after(m: MorphoMarket, pos: MorphoPosition, repay: int, withdraw: int) -> int | None:
    """health()'s hf after repaying and withdrawing (UINT256_MAX: no debt); None where Morpho reverts."""
    try:
        m2, p2 = apply_repay(m, pos, repay)
    except MorphoTopUpRevert:
        return None
    if withdraw > p2.collateral:
        return None
    hf = health(m2, replace(p2, collateral=p2.collateral - withdraw))[2]
    return UINT256_MAX if hf is None else hf


def plan_morpho_deleverage(m: MorphoMarket, pos: MorphoPosition, target_hf_wad: int, dex: DexInputs, *,
                           morpho: Address, contract: Address, max_slippage_bps: int,
                           close: bool = False) -> MorphoDeleverageQuote | None:
    """The smallest repay that reaches ``target_hf_wad`` after selling just enough collateral
    to pay it (``close``: repay all of it), on the cheaper pool; None when none can."""
    owed = full_repay_assets(m, pos)
    if owed == 0 or pos.collateral == 0:
        return None
    best = None
    for route in single_routes(m.params.collateral_token, m.params.loan_token, dex):
        sizes: dict[int, tuple[int, int]] = {}

        def reaches(repay: int) -> bool:
            withdraw = smallest_input(route, dex.pools, repay, pos.collateral)
            hf = None if withdraw is None else _after(m, pos, repay, withdraw)
            if hf is None:
                return False
            sizes[repay] = (withdraw, hf)
            return hf >= target_hf_wad

        repay = (owed if reaches(owed) or owed in sizes else None) if close else first_true(reaches, 0, owed)
        if repay is None:
            continue
        withdraw, hf = sizes[repay]
        out = quote_route(route, dex.pools, withdraw)
        q = MorphoDeleverageQuote(morpho, m.params, contract, pos.account, repay,
                                  pos.borrow_shares if repay == owed else 0, withdraw, route.hops[0].fee, out, hf,
                                  withdraw * m.price // ORACLE_PRICE_SCALE, min(hf, target_hf_wad),
                                  max_slippage_bps)
        if best is None or q.withdraw < best.withdraw:
            best = q
    return best


def morpho_deleverage_top_up(key: str, m: MorphoMarket, pos: MorphoPosition, hf: int, rule: ProtectRule,
                             symbols: dict[str, str], dex: DexInputs | None, morpho: Address,
                             close: bool = False) -> TopUp | None:
    """The rule's deleverage (``close``: its stop-loss) on this market as a TopUp, or None."""
    if rule.contract is None or dex is None:
        return None
    want = (symbols.get(m.params.collateral_token, "").upper(), symbols.get(m.params.loan_token, "").upper())
    if want not in pairs_of(rule.actions) or (close and (rule.close_below or ("",))[0] != want[0]):
        return None
    later = accrue(m, m.timestamp + HORIZON_S)
    q = plan_morpho_deleverage(later, pos, rule.target_hf_wad, dex, morpho=morpho, contract=rule.contract,
                               max_slippage_bps=rule.max_slippage_bps, close=close)
    if q is None:
        return None
    q = replace(q, deadline=m.timestamp + DEADLINE_S)
    why = (f"{want[0]} at or below the stop-loss {rule.close_below[1]} (USD e8): close on Morpho, sell "
           f"{q.withdraw} {want[0]} (price impact {q.price_impact_bps} bps) to repay all {q.repay} {want[1]}"
           if close and rule.close_below else
           f"health factor {hf} below trigger {rule.trigger_hf_wad}; deleverage on Morpho: sell {q.withdraw} "
           f"{want[0]} (price impact {q.price_impact_bps} bps) to repay {q.repay} {want[1]}")
    plan = TopUpPlan("deleverage", q.collateral, q.withdraw, q.expected_hf_wad, False, 0)
    return TopUp(key, "morpho_blue", pos.account, m.block, hf, plan, why, q)


def deleverage_calldata(q: MorphoDeleverageQuote) -> bytes:
    types = ("(address,(address,address,address,address,uint256),address,uint256,uint256,uint256,uint24,uint256,"
             "uint256,uint256)")
    args = (q.morpho, q.params.as_tuple(), q.borrower, q.repay, q.repay_shares, q.withdraw, q.fee, q.deadline,
            q.min_hf_wad, q.max_slippage_bps)
    return selector(DELEVERAGE_MORPHO) + encode([types], [args])
