"""Aave V3 3.6 top-up planning for one's own loans, pure: no IO, ints only. Beside
``aave_topup`` (3.0.2), same contract: ``plan_top_up36`` returns the smallest supply or repay
(first action in preference order the wallet can pay) whose exact 3.6 health factor reaches
the target, else the best partial plan.

``apply_supply36`` / ``apply_repay36`` are the account after ``Pool.supply`` / ``Pool.repay``
on a 3.6 Pool (SupplyLogic.executeSupply, BorrowLogic.executeRepay): the aToken mint is
``rayDivFloor(amount, income)`` (TokenMath.getATokenMintScaledAmount), the debt burn
``rayDivFloor(payback, index)`` (getVTokenBurnScaledAmount), the debt repaid at most
``rayMulCeil(scaled, index)``; a first supply turns collateral on as
ValidationLogic.validateAutomaticUseAsCollateral allows (no debt ceiling, a non-zero LTV
for the user's e-mode, not in isolation). 3.6's HF is sum(collateral * LT) / debt with no
floored average, so it is monotone in either amount and a bisection finds the exact least
amount. Not checked (not in the market state): the supply cap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from keeper.protocols.aave_v3.math36 import (
    category,
    hf36,
    normalized_debt,
    normalized_income,
    ray_div_floor,
    reserve_ltv,
    v_token_balance,
)
from keeper.protocols.aave_v3.liquidation import user_reserve
from keeper.protocols.aave_v3.topup import COLLATERAL_MASK, UINT128_MAX, TopUpPlan, _with_row
from keeper.model import Address
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState, Reserve
from keeper.units import UINT256_MAX


class TopUp36Invalid(ValueError):
    """The supply / repay would revert with this Errors.sol custom error."""

    def __init__(self, error: str) -> None:
        self.error = error
        super().__init__(f"{error}()")


def _flags(r: Reserve, frozen_blocks: bool) -> None:
    if not r.config.active:
        raise TopUp36Invalid("ReserveInactive")
    if r.config.paused:
        raise TopUp36Invalid("ReservePaused")
    if frozen_blocks and r.config.frozen:
        raise TopUp36Invalid("ReserveFrozen")


def _auto_collateral(market: AaveMarketState, acct: AaveAccount, r: Reserve) -> bool:
    # Aave 3.6 ValidationLogic.validateAutomaticUseAsCollateral -> validateUseAsCollateral
    if r.config.debt_ceiling != 0 or reserve_ltv(r, category(market, acct.emode)) == 0:
        return False
    coll = acct.user_config & COLLATERAL_MASK
    if coll == 0:
        return True
    if coll & (coll - 1) == 0:  # one collateral: isolation mode if it has a debt ceiling
        only = next((x for x in market.reserves if x.id == (coll.bit_length() - 1) >> 1), None)
        if only is not None and only.config.debt_ceiling != 0:
            return False
    return True


def apply_supply36(market: AaveMarketState, acct: AaveAccount, asset: Address, amount: int) -> AaveAccount:
    """The account after ``Pool.supply(asset, amount, acct, 0)`` at ``market.timestamp``."""
    r = market.by_asset(asset)
    if amount == 0:
        raise TopUp36Invalid("InvalidAmount")
    _flags(r, frozen_blocks=True)
    scaled = ray_div_floor(amount, normalized_income(r, market.timestamp))
    if scaled == 0:
        raise TopUp36Invalid("InvalidAmount")
    row = user_reserve(acct, r.id)
    if row.scaled_a_token + scaled > UINT128_MAX:
        raise TopUp36Invalid("SafeCastOverflowedUintDowncast")
    cfg = acct.user_config
    if row.scaled_a_token == 0 and _auto_collateral(market, acct, r):
        cfg |= 1 << (2 * r.id + 1)
    return _with_row(acct, replace(row, scaled_a_token=row.scaled_a_token + scaled), cfg)


def repayable36(market: AaveMarketState, acct: AaveAccount, r: Reserve) -> int:
    """The variable debt ``repay`` can take (VariableDebtToken.balanceOf, rounded up)."""
    return v_token_balance(user_reserve(acct, r.id).scaled_variable_debt,
                           normalized_debt(r, market.timestamp))


def apply_repay36(market: AaveMarketState, acct: AaveAccount, asset: Address, amount: int) -> AaveAccount:
    """The account after ``Pool.repay(asset, amount, 2, acct)`` at ``market.timestamp``."""
    r = market.by_asset(asset)
    row = user_reserve(acct, r.id)
    if amount == 0:
        raise TopUp36Invalid("InvalidAmount")
    _flags(r, frozen_blocks=False)
    if row.scaled_variable_debt == 0:
        raise TopUp36Invalid("NoDebtOfSelectedType")
    payback = min(amount, repayable36(market, acct, r))
    burned = ray_div_floor(payback, normalized_debt(r, market.timestamp))
    if burned == 0:
        raise TopUp36Invalid("InvalidBurnAmount")
    left = row.scaled_variable_debt - burned
    cfg = acct.user_config if left else acct.user_config & ~(1 << (2 * r.id))
    return _with_row(acct, replace(row, scaled_variable_debt=left), cfg)


_APPLY = {"supply": apply_supply36, "repay": apply_repay36}


def hf_after36(market: AaveMarketState, acct: AaveAccount, action: str, asset: Address, amount: int) -> int:
    """The 3.6 health factor after the action (raises TopUp36Invalid where the Pool reverts)."""
    return hf36(market, _APPLY[action](market, acct, asset, amount))


def _least(market: AaveMarketState, acct: AaveAccount, action: str, asset: Address, target: int,
           hi: int) -> int | None:
    """Smallest amount in [1, hi] reaching ``target`` (HF is monotone in it), None if hi does not."""
    def reaches(amount: int) -> bool:
        try:
            return hf_after36(market, acct, action, asset, amount) >= target
        except TopUp36Invalid:
            return False
    if hi < 1 or not reaches(hi):
        return None
    lo = 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _plan_one(market: AaveMarketState, acct: AaveAccount, target: int, action: str, asset: Address,
              balance: int) -> TopUpPlan | None:
    r = market.by_asset(asset)
    try:
        _flags(r, frozen_blocks=action == "supply")
    except TopUp36Invalid:
        return None
    if action == "supply":
        ceiling = UINT128_MAX  # scaled balances are uint128: more can never be supplied
        useful = balance
    elif action == "repay":
        ceiling = repayable36(market, acct, r)
        useful = min(balance, ceiling)
    else:
        raise ValueError(f"unknown top-up action {action!r} (supply or repay)")
    needed = _least(market, acct, action, r.asset, target, min(balance, ceiling))
    if needed is not None:
        return TopUpPlan(action, r.asset, needed, hf_after36(market, acct, action, r.asset, needed),
                         False, 0)
    if useful <= 0:
        return None
    try:
        hf = hf_after36(market, acct, action, r.asset, useful)
    except TopUp36Invalid:
        return None
    more = _least(market, acct, action, r.asset, target, ceiling)
    return TopUpPlan(action, r.asset, useful, hf, True, None if more is None else more - useful)


def plan_top_up36(market: AaveMarketState, acct: AaveAccount, target_hf_wad: int,
                  actions: list[tuple[str, Address]], wallet: Mapping[Address, int]) -> TopUpPlan | None:
    """``aave_topup.plan_top_up`` with Aave 3.6's math (see the module doc)."""
    if not 0 < target_hf_wad <= UINT256_MAX:
        raise ValueError(f"target_hf_wad must be a positive uint256, got {target_hf_wad}")
    now = hf36(market, acct)
    if now >= target_hf_wad:
        return None
    balances = {a.lower(): v for a, v in wallet.items()}
    best: TopUpPlan | None = None
    for action, asset in actions:
        plan = _plan_one(market, acct, target_hf_wad, action, asset, balances.get(asset.lower(), 0))
        if plan is None:
            continue
        if not plan.partial:
            return plan
        if plan.expected_hf_wad > now and (best is None or plan.expected_hf_wad > best.expected_hf_wad):
            best = plan
    return best
