"""Compound V3 (Comet) deleverage, pure: repay a borrower's base debt from its own collateral
through keeper's KeeperProtection contract (``deleverageComet``, contracts/src/
CometProtection.sol). No IO, ints only.

The contract flash-borrows ``repay`` of the base token (Morpho Blue, free, or Aave, its
premium), ``supplyTo``s it to the borrower (Comet.supplyBase: topup.apply_repay), takes
``withdraw`` of the collateral with ``withdrawFrom`` through the borrower's
``allow(contract, true)`` (Comet.withdrawCollateral: the balance falls, the assetsIn bit
clears at 0, and it reverts ``NotCollateralized`` unless the account stays
borrow-collateralized), sells it on one Uniswap V3 pool and repays the flash loan; what the
swap paid above that goes to the borrower. So ``swap(withdraw) >= repay + flash fee``.

The health factor is keeper's Comet health factor (math.hf_wad: liquidation-weighted
collateral value * 1e18 // borrow value), which the contract recomputes on chain from
Comet's own views (``cometHealthFactor``). ``plan_comet_deleverage`` finds the smallest
``repay`` that reaches the target (bisection; the health factor rises with ``repay`` while
the swap's cost is below the position's margin, as for Aave: keeper.protocols.aave_v3.
deleverage), with ``withdraw`` the smallest input whose exact V3 output pays the flash loan;
the pool fee tier that sells the least collateral wins. The market is accrued ``HORIZON_S``
ahead, so the interest until the transaction is mined is in the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from eth_abi import encode

from keeper.chain.abi import selector
from keeper.dex.capital_free import FlashSource
from keeper.dex.deleverage import DEADLINE_S, HORIZON_S, DexInputs, impact_bps, pairs_of, single_routes, smallest_input
from keeper.dex.route import quote_route
from keeper.model import Address, ProtectRule, TopUp, TopUpPlan
from keeper.protocols.compound_v3.math import (
    CometAccount, CometMarket, CometRevert, accrue, assets_in, borrow_balance, hf_wad, is_borrow_collateralized,
)  # fmt: skip
from keeper.protocols.compound_v3.topup import _balance, apply_repay
from keeper.protocols.morpho_blue.topup import first_true
from keeper.units import UINT256_MAX

COMET_DELEVERAGE = "(address,address,address,uint256,uint256,uint24,uint256,uint256,uint256,uint8,address)"
DELEVERAGE_COMET = f"deleverageComet({COMET_DELEVERAGE})"


@dataclass(frozen=True, slots=True)
class CometDeleverageQuote:
    comet: Address
    contract: Address  # KeeperProtection
    borrower: Address
    collateral: Address
    debt: Address  # the base token
    repay: int  # base units, flash-borrowed and supplied to the borrower
    withdraw: int  # collateral units sold
    fee: int  # the Uniswap V3 pool's fee tier
    expected_out: int
    flash_fee: int
    expected_hf_wad: int
    oracle_out: int  # Comet's getPrice value of ``withdraw`` in base units
    min_hf_wad: int
    max_slippage_bps: int
    flash_source: int
    flash_lender: Address
    deadline: int = 0

    @property
    def price_impact_bps(self) -> int:
        return impact_bps(self.oracle_out, self.expected_out)


def apply_withdraw(market: CometMarket, acct: CometAccount, asset: Address, amount: int) -> CometAccount:
    """The account after ``withdrawFrom(acct, to, asset, amount)`` of a collateral asset
    (Comet.withdrawCollateral): CometRevert("NotCollateralized") when it would not stay
    borrow-collateralized; an underflow when it holds less."""
    info = market.asset_info(asset)
    old = _balance(acct, info.asset)
    if amount > old:
        raise CometRevert("Underflow", f"withdraw {amount} of {old}")
    bits = assets_in(market, acct)
    if old != 0 and old == amount:  # updateAssetsIn
        bits &= ~(1 << info.offset)
    coll = {a: v for a, v in acct.collateral.items() if a.lower() != info.asset.lower()}
    coll[info.asset] = old - amount
    after = replace(acct, collateral=coll, assets_in=bits)
    if not is_borrow_collateralized(market, after):
        raise CometRevert("NotCollateralized")
    return after


def oracle_value(m: CometMarket, asset: Address, amount: int) -> int:
    """``amount`` of ``asset`` in base units at Comet's prices (CometProtection._cometOracleMinimum)."""
    info = m.asset_info(asset)
    return amount * m.price(info.asset) * m.base_scale // (info.scale * m.price(m.base_token))


def plan_comet_deleverage(m: CometMarket, acct: CometAccount, target_hf_wad: int, collateral: Address,
                          dex: DexInputs, *, comet: Address, contract: Address,
                          max_slippage_bps: int, close: bool = False) -> CometDeleverageQuote | None:
    """The deleverage that brings ``acct`` to ``target_hf_wad`` selling the least ``collateral``
    (``close``: repaying all of the borrow), or None (no debt, no pool, not enough collateral)."""
    owed = borrow_balance(m, acct)
    held = _balance(acct, collateral)
    if owed == 0 or held == 0:
        return None
    flash = FlashSource(dex.flash_source, dex.flash_lender, UINT256_MAX, dex.flash_premium_bps)
    best = None
    for route in single_routes(collateral, m.base_token, dex):
        sizes: dict[int, tuple[int, int]] = {}  # repay -> (withdraw, hf)

        def reaches(repay: int) -> bool:
            withdraw = smallest_input(route, dex.pools, repay + flash.fee_for(repay), held)
            if withdraw is None:
                return False
            try:
                after = apply_withdraw(m, apply_repay(m, acct, repay), collateral, withdraw)
            except (CometRevert, OverflowError):
                return False
            hf = hf_wad(m, after)
            sizes[repay] = (withdraw, UINT256_MAX if hf is None else hf)
            return sizes[repay][1] >= target_hf_wad

        repay = (owed if reaches(owed) else None) if close else first_true(reaches, 0, owed)
        if repay is None:
            continue
        withdraw, hf = sizes[repay]
        q = CometDeleverageQuote(comet, contract, acct.account, collateral, m.base_token, repay, withdraw,
                                 route.hops[0].fee, quote_route(route, dex.pools, withdraw), flash.fee_for(repay),
                                 hf, oracle_value(m, collateral, withdraw), target_hf_wad, max_slippage_bps,
                                 dex.flash_source, dex.flash_lender)
        if best is None or q.withdraw < best.withdraw:
            best = q
    return best


def comet_deleverage_top_up(key: str, m: CometMarket, acct: CometAccount, hf: int, rule: ProtectRule,
                            dex: DexInputs | None, comet: Address, close: bool = False) -> TopUp | None:
    """The first of the rule's ``deleverage:COLLATERAL->BASE`` actions that reaches the
    target, as a TopUp whose quote is the CometDeleverageQuote; None when none can.
    ``close`` (the stop-loss): repay all of the borrow from the stop-loss asset; the
    borrow balance is sized ``HORIZON_S`` ahead, so what it pays beyond the debt at mining
    stays the borrower's, as a base supply."""
    if rule.contract is None or dex is None:
        return None
    listed = {a.symbol.upper(): a.asset for a in m.assets}
    later = accrue(m, m.timestamp + HORIZON_S)
    for coll, debt in pairs_of(rule.actions):
        if debt != m.base_symbol.upper() or coll not in listed:
            continue
        if close and (rule.close_below is None or rule.close_below[0] != coll):
            continue
        q = plan_comet_deleverage(later, acct, rule.target_hf_wad, listed[coll], dex, comet=comet,
                                  contract=rule.contract, max_slippage_bps=rule.max_slippage_bps, close=close)
        if q is None:
            continue
        q = replace(q, deadline=m.timestamp + DEADLINE_S)
        why = (f"{coll} at or below the stop-loss {rule.close_below[1]} (USD e8): close on Comet, sell {q.withdraw} "
               f"{coll} (price impact {q.price_impact_bps} bps) to repay all {q.repay} {debt}"
               if close and rule.close_below else f"health factor {hf} below trigger {rule.trigger_hf_wad}; deleverage on Comet: sell {q.withdraw} "
               f"{coll} (price impact {q.price_impact_bps} bps) to repay {q.repay} {debt}, "
               f"health factor to {q.expected_hf_wad}")
        return TopUp(key, "compound_v3", acct.account, m.block, hf,
                     TopUpPlan("deleverage", q.collateral, q.withdraw, q.expected_hf_wad, False, 0), why, q)
    return None


def deleverage_calldata(q: CometDeleverageQuote) -> bytes:
    args = (q.comet, q.borrower, q.collateral, q.repay, q.withdraw, q.fee, q.deadline, q.min_hf_wad,
            q.max_slippage_bps, q.flash_source, q.flash_lender)
    return selector(DELEVERAGE_COMET) + encode([COMET_DELEVERAGE], [args])
