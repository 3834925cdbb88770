"""Aave V3 (protocol 3.0.2) top-up planning for one's own loans, pure: no IO, ints only.

``apply_supply`` / ``apply_repay`` are the account after ``Pool.supply`` / ``Pool.repay``
(variable rate) at ``market.timestamp``, as SupplyLogic.executeSupply and
BorrowLogic.executeRepay leave it; the market state itself needs no change for the
health factor at that timestamp (updateState stores the normalized indices the math
already uses; the new rates only matter later). ``plan_top_up`` finds the smallest
amount that brings ``account_data(...).health_factor_wad`` to the target.

Collateral on supply (SupplyLogic.executeSupply): only a FIRST supply (scaled aToken
balance 0 before) can turn the collateral bit on, and only when
ValidationLogic.validateAutomaticUseAsCollateral allows it: LTV != 0 (not LT), no debt
ceiling (an isolated asset needs ISOLATED_COLLATERAL_SUPPLIER_ROLE, assumed not held),
and the user either has no collateral yet or is not in isolation mode. Supplying more of
an asset whose bit is off (the user turned it off) does NOT count as collateral.
Not checked (not in the market state): the supply cap (needs the reserve's total supply).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from keeper.protocols.aave_v3.math import (
    get_normalized_debt,
    get_normalized_income,
    is_in_emode_category,
    is_using_as_collateral,
    ray_div,
    ray_mul,
    reserve_ids_in_use,
)
from keeper.protocols.aave_v3.liquidation import user_reserve
from keeper.protocols.aave_v3.health import account_data, calculate_user_account_data, emode_configuration
from keeper.model import Address, TopUpPlan
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState, Reserve, UserReserve
from keeper.units import BPS, UINT256_MAX, WAD

COLLATERAL_MASK = int("AA" * 32, 16)  # Aave V3 UserConfiguration.COLLATERAL_MASK
UINT128_MAX = 2**128 - 1  # scaled balances are stored as uint128 (SafeCast.toUint128)
ERRORS = {"INVALID_MINT_AMOUNT": "24", "INVALID_BURN_AMOUNT": "25", "INVALID_AMOUNT": "26",
          "RESERVE_INACTIVE": "27", "RESERVE_FROZEN": "28", "RESERVE_PAUSED": "29",
          "NO_DEBT_OF_SELECTED_TYPE": "39", "SAFECAST_OVERFLOW": "toUint128"}  # fmt: skip


class TopUpInvalid(ValueError):
    """The supply / repay would revert; ``error`` is the Errors.sol name, ``code`` its string."""

    def __init__(self, error: str) -> None:
        self.error, self.code = error, ERRORS[error]
        super().__init__(f"{error} ({self.code})")



def _with_row(acct: AaveAccount, row: UserReserve, cfg: int) -> AaveAccount:
    rows = [ur for ur in acct.reserves if ur.reserve_id != row.reserve_id] + [row]
    return replace(acct, user_config=cfg, reserves=tuple(sorted(rows, key=lambda ur: ur.reserve_id)))


def _check_flags(reserve: Reserve, frozen_blocks: bool) -> None:
    # ValidationLogic.validateSupply / validateRepay: getFlags requires, in that order
    if not reserve.config.active:
        raise TopUpInvalid("RESERVE_INACTIVE")
    if reserve.config.paused:
        raise TopUpInvalid("RESERVE_PAUSED")
    if frozen_blocks and reserve.config.frozen:
        raise TopUpInvalid("RESERVE_FROZEN")


def auto_collateral(market: AaveMarketState, user_config: int, reserve: Reserve) -> bool:
    """ValidationLogic.validateAutomaticUseAsCollateral (caller without the isolated role)."""
    if reserve.config.debt_ceiling != 0:
        return False  # only ISOLATED_COLLATERAL_SUPPLIER_ROLE may enable it as a side effect
    # validateUseAsCollateral
    if reserve.config.ltv_bps == 0:
        return False
    coll = user_config & COLLATERAL_MASK
    if coll == 0:  # !isUsingAsCollateralAny
        return True
    if coll & (coll - 1) == 0:  # isUsingAsCollateralOne -> getIsolationModeState
        first = (coll.bit_length() - 1) >> 1
        only = next((r for r in market.reserves if r.id == first), None)
        if only is not None and only.config.debt_ceiling != 0:
            return False  # isolation mode active
    return True  # reserve.debt_ceiling == 0 here


def apply_supply(market: AaveMarketState, acct: AaveAccount, asset: Address, amount: int) -> AaveAccount:
    """The account after ``Pool.supply(asset, amount, acct, 0)`` at ``market.timestamp``."""
    # Aave V3 SupplyLogic.executeSupply
    reserve = market.by_asset(asset)
    if amount == 0:
        raise TopUpInvalid("INVALID_AMOUNT")
    _check_flags(reserve, frozen_blocks=True)
    scaled = ray_div(amount, get_normalized_income(reserve, market.timestamp))  # AToken.mint
    if scaled == 0:
        raise TopUpInvalid("INVALID_MINT_AMOUNT")
    row = user_reserve(acct, reserve.id)
    new = row.scaled_a_token + scaled
    if new > UINT128_MAX:
        raise TopUpInvalid("SAFECAST_OVERFLOW")
    cfg = acct.user_config
    if row.scaled_a_token == 0 and auto_collateral(market, cfg, reserve):  # isFirstSupply
        cfg |= 1 << (2 * reserve.id + 1)
    return _with_row(acct, replace(row, scaled_a_token=new), cfg)


def apply_repay(market: AaveMarketState, acct: AaveAccount, asset: Address, amount: int) -> AaveAccount:
    """The account after ``Pool.repay(asset, amount, 2, acct)`` (variable debt) at ``market.timestamp``;
    Aave takes min(amount, variable debt)."""
    # Aave V3 BorrowLogic.executeRepay
    reserve = market.by_asset(asset)
    index = get_normalized_debt(reserve, market.timestamp)
    row = user_reserve(acct, reserve.id)
    variable = ray_mul(row.scaled_variable_debt, index) if row.scaled_variable_debt else 0
    if amount == 0:  # validateRepay
        raise TopUpInvalid("INVALID_AMOUNT")
    _check_flags(reserve, frozen_blocks=False)
    if variable == 0:
        raise TopUpInvalid("NO_DEBT_OF_SELECTED_TYPE")
    payback = min(amount, variable)
    burned = ray_div(payback, index)  # VariableDebtToken.burn -> _burnScaled
    if burned == 0:
        raise TopUpInvalid("INVALID_BURN_AMOUNT")
    cfg = acct.user_config
    if row.stable_debt + variable - payback == 0:
        cfg &= ~(1 << (2 * reserve.id))  # setBorrowing(id, false)
    return _with_row(acct, replace(row, scaled_variable_debt=row.scaled_variable_debt - burned), cfg)


_APPLY: dict[str, Callable[[AaveMarketState, AaveAccount, Address, int], AaveAccount]] = {
    "supply": apply_supply, "repay": apply_repay}  # fmt: skip


def hf_after(market: AaveMarketState, acct: AaveAccount, action: str, asset: Address, amount: int) -> int:
    """account_data's health factor after the action (raises TopUpInvalid where Aave reverts)."""
    return account_data(market, _APPLY[action](market, acct, asset, amount)).health_factor_wad


def _first_true(pred: Callable[[int], bool], lo: int, hi: int, guess: int | None = None) -> int | None:
    """Smallest x in (lo, hi] with pred(x), for pred false at lo and monotone; None if not pred(hi).
    A guess brackets first: guess -/+ 2**20-th of it, widened by doubling until verified."""
    if hi <= lo or not pred(hi):
        return None
    if guess is not None and lo < guess < hi:
        step = max(1, guess >> 20)
        while True:
            a, b = max(lo, guess - step), min(hi, guess + step)
            ok_a, ok_b = a > lo and pred(a), b == hi or pred(b)
            if not ok_a and ok_b:
                lo, hi = a, b
                break
            step *= 4
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _hf_at_least(market: AaveMarketState, acct: AaveAccount, action: str, asset: Address,
                 target: int) -> Callable[[int], bool]:  # fmt: skip
    def pred(amount: int) -> bool:
        try:
            return hf_after(market, acct, action, asset, amount) >= target
        except TopUpInvalid:
            return False
    return pred


def _min_repay(market: AaveMarketState, acct: AaveAccount, reserve: Reserve, target: int) -> int | None:
    """Smallest repay reaching ``target`` (HF is monotone in it: collateral is fixed, debt falls)."""
    index = get_normalized_debt(reserve, market.timestamp)
    scaled = user_reserve(acct, reserve.id).scaled_variable_debt
    variable = ray_mul(scaled, index) if scaled else 0
    if variable == 0:
        return None
    t = calculate_user_account_data(market, acct)
    unit = 10**reserve.config.decimals
    price = _math_price(market, acct, reserve)
    # estimate: the debt (base) where wadDiv(percentMul(C, LT), D) == target
    adjusted = t.total_collateral_base * t.avg_liquidation_threshold_bps // BPS
    excess = max(0, t.total_debt_base - adjusted * WAD // target)
    guess = excess * unit // price + 1 if price else None
    return _first_true(_hf_at_least(market, acct, "repay", reserve.asset, target), 0, variable, guess)


def _math_price(market: AaveMarketState, acct: AaveAccount, reserve: Reserve) -> int:
    # the price GenericLogic.calculateUserAccountData uses for this reserve
    if acct.emode != 0:
        emode_price = emode_configuration(market, acct.emode)[2]
        if emode_price != 0 and acct.emode == reserve.config.emode_category:
            return emode_price
    return reserve.price_base


def _min_supply(market: AaveMarketState, acct: AaveAccount, reserve: Reserve, target: int) -> int | None:
    """Smallest supply reaching ``target``, exact even where HF is not monotone in it.

    HF = wadDiv(percentMul(T, floor(S / T)), D) with T the collateral and S the sum of
    value * LT (GenericLogic). Supplying adds V (the asset's value) to T and V * lt to S.
    HF >= target  <=>  T * floor(S / T) >= Y (Y from the target, D and the rounding).
    floor(S / T) moves monotonically toward lt as V grows, so V's axis splits into
    intervals of constant level k; within one, the condition is V >= ceil(Y / k) - T_o.
    When lt < the current average LT the level falls as V grows: HF can then dip by up
    to 1 bps of T, and the set of good V is a union of intervals. The answer is the
    smallest amount whose V lands in the first interval it can reach."""
    ts, cfg, rid = market.timestamp, acct.user_config, reserve.id
    row = user_reserve(acct, rid)
    first = row.scaled_a_token == 0 and auto_collateral(market, cfg, reserve)
    if not (is_using_as_collateral(cfg, rid) or first) or reserve.config.liquidation_threshold_bps == 0:
        return None  # supplying does not change the HF
    others = replace(acct, user_config=cfg & ~(1 << (2 * rid + 1)))
    base = calculate_user_account_data(market, others)
    t_o, debt = base.total_collateral_base, base.total_debt_base
    if debt == 0:
        return None
    s_o = _weighted_lt_sum(market, others)
    if t_o and s_o // t_o != base.avg_liquidation_threshold_bps:
        return None  # inconsistent with account_data: refuse rather than guess
    lt = reserve.config.liquidation_threshold_bps
    if is_in_emode_category(acct.emode, reserve.config.emode_category):
        lt = emode_configuration(market, acct.emode)[1]
    income, price = get_normalized_income(reserve, ts), _math_price(market, acct, reserve)
    unit = 10**reserve.config.decimals

    def value(amount: int) -> int:  # the asset's collateral value after supplying ``amount``
        return ray_mul(row.scaled_a_token + ray_div(amount, income), income) * price // unit

    x_min = max(0, -(-(target * debt - debt // 2) // WAD))  # wadDiv(X, D) >= target <=> X >= x_min
    y = BPS * x_min - BPS // 2  # percentMul(T, k) >= x_min <=> T * k >= y
    amount_max = UINT128_MAX - row.scaled_a_token  # scaled balances are uint128
    v, held = value(0), ray_mul(row.scaled_a_token, income)  # 0, 0 on a first supply
    top = value(amount_max)
    while v <= top:
        t, s = t_o + v, s_o + lt * v
        k = s // t if t else 0
        end = _level_end(t_o, s_o, lt, k, v)
        start = max(v, -(-y // k) - t_o) if k else None
        if start is not None and (end is None or start <= end):
            guess = start * unit // max(price, 1) - held
            amount = _first_true(lambda a, lo=start: value(a) >= lo, 0, amount_max, guess)
            if amount is not None and (end is None or value(amount) <= end):
                return amount
        if end is None:
            return None
        v = end + 1
    return None


def _level_end(t_o: int, s_o: int, lt: int, k: int, v: int) -> int | None:
    """Largest V >= v with floor((s_o + lt V) / (t_o + V)) == k; None: k holds forever."""
    if lt > k:  # rising: stays below k + 1 while s_o - (k+1) t_o + V (lt - k - 1) < 0
        if lt == k + 1:
            return None
        return max(v, -(-((k + 1) * t_o - s_o) // (lt - k - 1)) - 1)
    if lt < k:  # falling: stays >= k while s_o - k t_o + V (lt - k) >= 0
        return max(v, (s_o - k * t_o) // (k - lt))
    return None


def _weighted_lt_sum(market: AaveMarketState, acct: AaveAccount) -> int:
    # sum of value * LT over counted collateral, as GenericLogic.calculateUserAccountData sums it
    cat_lt = emode_configuration(market, acct.emode)[1] if acct.emode else 0
    total = 0
    by_id = {r.id: r for r in market.reserves}
    for i in reserve_ids_in_use(acct.user_config):
        r = by_id[i]
        if r.config.liquidation_threshold_bps == 0 or not is_using_as_collateral(acct.user_config, i):
            continue
        amount = ray_mul(user_reserve(acct, i).scaled_a_token, get_normalized_income(r, market.timestamp))
        value = amount * _math_price(market, acct, r) // pow(10, r.config.decimals, 2**256)
        in_cat = is_in_emode_category(acct.emode, r.config.emode_category)
        total += value * (cat_lt if in_cat else r.config.liquidation_threshold_bps)
    return total


def _plan_one(market: AaveMarketState, acct: AaveAccount, target: int, action: str, asset: Address,
              balance: int) -> TopUpPlan | None:  # fmt: skip
    reserve = market.by_asset(asset)
    try:
        _check_flags(reserve, frozen_blocks=action == "supply")
    except TopUpInvalid:
        return None  # inactive, paused, or frozen for a supply: the action cannot be taken
    if action == "supply":
        needed = _min_supply(market, acct, reserve, target)
        useful = balance
    elif action == "repay":
        needed = _min_repay(market, acct, reserve, target)
        scaled = user_reserve(acct, reserve.id).scaled_variable_debt
        useful = min(balance, ray_mul(scaled, get_normalized_debt(reserve, market.timestamp)))
    else:
        raise ValueError(f"unknown top-up action {action!r} (supply or repay)")
    if needed is not None and needed <= balance:
        hf = hf_after(market, acct, action, reserve.asset, needed)
        if hf < target or _hf_at_least(market, acct, action, reserve.asset, target)(needed - 1):
            raise AssertionError(f"{action} {needed}: the exact search disagrees with account_data")
        return TopUpPlan(action, reserve.asset, needed, hf, False, 0)
    if useful <= 0:
        return None
    try:
        hf = hf_after(market, acct, action, reserve.asset, useful)
    except TopUpInvalid:
        return None
    shortfall = None if needed is None else needed - useful
    return TopUpPlan(action, reserve.asset, useful, hf, True, shortfall)


def plan_top_up(market: AaveMarketState, acct: AaveAccount, target_hf_wad: int,
                actions: list[tuple[str, Address]], wallet: Mapping[Address, int]) -> TopUpPlan | None:  # fmt: skip
    """The smallest amount of the first action (in preference order) the wallet can pay that
    brings the exact HF to >= ``target_hf_wad``.

    ``actions``: ("supply" | "repay", asset) in preference order; ``wallet``: asset ->
    balance (keys case-insensitive). When no action can be paid in full, the partial plan
    (whole wallet balance; for a repay at most the debt) with the highest HF, earlier
    preference on ties, with ``partial=True`` and its ``shortfall``. None when the HF is
    already >= target (or there is no debt), or when no action raises the HF at all.
    """
    if not 0 < target_hf_wad <= UINT256_MAX:
        raise ValueError(f"target_hf_wad must be a positive uint256, got {target_hf_wad}")
    now = account_data(market, acct).health_factor_wad
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
