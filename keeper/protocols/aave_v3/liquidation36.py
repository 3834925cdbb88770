"""Aave V3 3.6 liquidation planning, pure: no IO, ints only. Beside ``aave_liquidation`` (3.0.2).

``plan_liquidation36`` is 3.6's ``LiquidationLogic.executeLiquidationCall`` run off-chain on a
market state and an account read at the same block (``receiveAToken = false``), with its
reverts (``ValidationLogic.validateLiquidationCall``, the dust rule, the token burns) raised
as ``Liquidation36Invalid`` carrying the Errors.sol name. What 3.3+ changed from 3.0.2:

* close factor: 100% unless the chosen collateral and the chosen reserve debt are each worth
  at least ``MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD`` ($2,000 in base) and HF > 0.95; then at
  most 50% of the borrower's TOTAL debt (in base, converted to the debt asset, floored);
* dust: a liquidation that neither repays the whole reserve debt nor takes the whole
  collateral must leave at least ``MIN_LEFTOVER_BASE`` ($1,000) of both, else
  ``MustNotLeaveDust()`` (even for ``type(uint256).max``, which the cap can cut short);
* deficit: taking all the collateral burns the rest of the debt, on every reserve, as deficit
  (``DeficitCreated``); the quote says so (``leaves_deficit``); the liquidator's own numbers
  do not change;
* balances round as TokenMath does (collateral down, debt up; burns floor/ceil), debt in
  base rounds up (``mulDivCeil``), ``debtAmountNeeded`` rounds up (``percentDivCeil``);
* e-mode bonus only for collateral whose bit is set in the category's collateral bitmap;
* a reserve in its liquidation grace period (3.1) reverts ``LiquidationGraceSentinelCheckFailed``;
* the collateral paid out in the underlying leaves the reserve's virtual balance (3.4), which
  underflows (a panic) when the collateral is lent out: that pair is skipped.

``best_liquidation36`` picks the most profitable pair like ``best_liquidation`` and, where
the largest amount would revert for dust, the largest amount that does not (bisection on
the exact model: partial amounts are safe up to a bound, then revert until the cap). The
quote's ``debt_to_cover`` is what to pass to ``liquidationCall``: the wallet cap (or
``type(uint256).max``) when the Pool's own cap decides, so that interest accrued until the
transaction is mined cannot turn a full repay into a dust revert.
"""

from __future__ import annotations

from collections.abc import Mapping

from keeper.protocols.aave_v3.math36 import (
    Walk,
    a_token_balance,
    category,
    mul_div_ceil,
    normalized_debt,
    normalized_income,
    percent_div_ceil,
    ray_div_ceil,
    ray_div_floor,
    reserve_bonus,
    v_token_balance,
    walk,
)
from keeper.protocols.aave_v3.liquidation import LiquidationQuote, user_reserve
from keeper.protocols.aave_v3.math import percent_div, percent_mul
from keeper.health.status import HEALTH_FACTOR_LIQUIDATION_THRESHOLD
from keeper.model import Address
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState, Reserve
from keeper.units import UINT256_MAX

# Aave 3.6 LiquidationLogic constants
DEFAULT_LIQUIDATION_CLOSE_FACTOR = 5_000
CLOSE_FACTOR_HF_THRESHOLD = 950_000_000_000_000_000
MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD = 2_000 * 10**8
MIN_LEFTOVER_BASE = MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD // 2
DUST_MARGIN_BPS = 50  # keeper's own: partial amounts leave at least $1,005, not $1,000


class Liquidation36Invalid(ValueError):
    """liquidationCall would revert with this Errors.sol custom error (e.g. "MustNotLeaveDust")."""

    def __init__(self, error: str) -> None:
        self.error = error
        super().__init__(f"{error}()")


def _available_collateral(coll: Reserve, cp: int, cu: int, dp: int, du: int, debt_to_cover: int,
                          balance: int, bonus: int) -> tuple[int, int, int, int]:
    # Aave 3.6 LiquidationLogic._calculateAvailableCollateralToLiquidate
    # -> (collateral to the liquidator, debt needed, protocol fee, collateral in base)
    fee_pct = coll.config.liquidation_protocol_fee_bps
    if cp == 0 or du == 0 or dp == 0 or bonus == 0:
        raise Liquidation36Invalid("Panic(0x12)")  # division by zero
    base_collateral = dp * debt_to_cover * cu // (cp * du)
    max_collateral = percent_mul(base_collateral, bonus)
    if max_collateral > balance:
        amount = balance
        needed = percent_div_ceil(cp * amount * du // (dp * cu), bonus)
    else:
        amount, needed = max_collateral, debt_to_cover
    in_base = amount * cp // cu
    fee = 0
    if fee_pct != 0:
        fee = percent_mul(amount - percent_div(amount, bonus), fee_pct)
        amount -= fee
    return amount, needed, fee, in_base


def _quote(market: AaveMarketState, acct: AaveAccount, coll: Reserve, debt: Reserve,
           debt_to_cover: int, w: Walk, liquidator: Address | None) -> LiquidationQuote:
    # Aave 3.6 LiquidationLogic.executeLiquidationCall
    if not 0 <= debt_to_cover <= UINT256_MAX:
        raise ValueError(f"debt_to_cover is not a uint256: {debt_to_cover}")
    ts, cfg, hf = market.timestamp, acct.user_config, w.totals.health_factor_wad
    income, index = normalized_income(coll, ts), normalized_debt(debt, ts)
    scaled_coll = user_reserve(acct, coll.id).scaled_a_token
    balance = a_token_balance(scaled_coll, income)
    reserve_debt = v_token_balance(user_reserve(acct, debt.id).scaled_variable_debt, index)

    # ValidationLogic.validateLiquidationCall, in its order
    if liquidator is not None and liquidator.lower() == acct.account.lower():
        raise Liquidation36Invalid("SelfLiquidation")
    if not (coll.config.active and debt.config.active):
        raise Liquidation36Invalid("ReserveInactive")
    if coll.config.paused or debt.config.paused:
        raise Liquidation36Invalid("ReservePaused")
    if not (coll.liquidation_grace_until < ts and debt.liquidation_grace_until < ts):
        raise Liquidation36Invalid("LiquidationGraceSentinelCheckFailed")
    if hf >= HEALTH_FACTOR_LIQUIDATION_THRESHOLD:
        raise Liquidation36Invalid("HealthFactorNotBelowThreshold")
    if not (cfg >> (2 * coll.id + 1)) & 1:
        raise Liquidation36Invalid("CollateralCannotBeLiquidated")
    if reserve_debt == 0:
        raise Liquidation36Invalid("SpecifiedCurrencyNotBorrowedByUser")

    bonus = reserve_bonus(coll, category(market, acct.emode))
    cp, dp = coll.price_base, debt.price_base
    cu, du = pow(10, coll.config.decimals, 2**256), pow(10, debt.config.decimals, 2**256)
    debt_base = mul_div_ceil(reserve_debt, dp, du)
    coll_base = balance * cp // cu
    max_liquidatable, close_factor = reserve_debt, 10_000
    if (coll_base >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD and debt_base >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
            and hf > CLOSE_FACTOR_HF_THRESHOLD):
        half = percent_mul(w.totals.total_debt_base, DEFAULT_LIQUIDATION_CLOSE_FACTOR)
        if debt_base > half:
            max_liquidatable, close_factor = half * du // dp, DEFAULT_LIQUIDATION_CLOSE_FACTOR
    actual = min(debt_to_cover, max_liquidatable)
    to_liquidator, needed, fee, taken_base = _available_collateral(
        coll, cp, cu, dp, du, actual, balance, bonus)

    if needed < reserve_debt and to_liquidator + fee < balance:  # the 3.3 dust rule
        debt_left = mul_div_ceil(reserve_debt - needed, dp, du) >= MIN_LEFTOVER_BASE
        coll_left = (balance - to_liquidator - fee) * cp // cu >= MIN_LEFTOVER_BASE
        if not (debt_left and coll_left):
            raise Liquidation36Invalid("MustNotLeaveDust")
    no_collateral_left = w.totals.total_collateral_base == taken_base
    burn = reserve_debt if no_collateral_left else needed
    if ray_div_floor(burn, index) == 0:  # VariableDebtToken.burn -> _burnScaled
        raise Liquidation36Invalid("InvalidBurnAmount")
    if coll.virtual_underlying is not None:  # _burnCollateralATokens: virtual balance - taken
        added = needed if coll.id == debt.id else 0
        if to_liquidator > coll.virtual_underlying + added:
            raise Liquidation36Invalid("Panic(0x11)")  # not enough liquidity to pay out
    taken = to_liquidator + fee  # before the treasury transfer's cap
    burned = ray_div_ceil(to_liquidator, income)  # AToken.burn (getATokenBurnScaledAmount)
    if burned == 0:
        raise Liquidation36Invalid("InvalidBurnAmount")
    if fee != 0 and ray_div_ceil(fee, income) > scaled_coll - burned:  # treasury transfer, capped
        fee = a_token_balance(scaled_coll - burned, income)
    other_debt = any((cfg >> (2 * i)) & 1 for i in range(len(market.reserves)) if i != debt.id)
    coll_value = to_liquidator * coll.price_base // cu
    debt_value = needed * debt.price_base // du
    return LiquidationQuote(
        collateral_asset=coll.asset, debt_asset=debt.asset, debt_to_repay=needed,
        collateral_to_receive=to_liquidator, protocol_fee_collateral=fee,
        collateral_value_base=coll_value, debt_value_base=debt_value,
        bonus_value_base=coll_value - debt_value, close_factor_bps=close_factor,
        health_factor_wad=hf, debt_to_cover=debt_to_cover,
        leaves_deficit=no_collateral_left and (needed < reserve_debt or other_debt),
        collateral_taken=taken)


def plan_liquidation36(market: AaveMarketState, acct: AaveAccount, collateral_asset: Address,
                       debt_asset: Address, debt_to_cover: int,
                       liquidator: Address | None = None) -> LiquidationQuote:
    """What ``liquidationCall(collateral, debt, user, debt_to_cover, false)`` does on a 3.6 Pool
    at ``market.timestamp``; raises Liquidation36Invalid where it reverts."""
    coll, debt = market.by_asset(collateral_asset), market.by_asset(debt_asset)
    return _quote(market, acct, coll, debt, debt_to_cover, walk(market, acct), liquidator)


def _largest_safe(market: AaveMarketState, acct: AaveAccount, coll: Reserve, debt: Reserve,
                  cap: int, w: Walk, liquidator: Address | None) -> LiquidationQuote | None:
    """The quote of the largest amount <= cap that does not revert (dust), by bisection, less a
    margin of DUST_MARGIN_BPS of MIN_LEFTOVER_BASE (in debt units)."""
    def ok(amount: int) -> LiquidationQuote | None:
        try:
            return _quote(market, acct, coll, debt, amount, w, liquidator)
        except Liquidation36Invalid:
            return None
    lo, hi = 0, cap  # ok(lo) is not tried (0 reverts); ok(hi) failed
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid) is not None:
            lo = mid
        else:
            hi = mid
    if lo == 0:
        return None
    # the bound leaves exactly $1,000: step back DUST_MARGIN_BPS of it, so that a small price
    # move before the transaction is mined does not turn it into a dust revert
    margin = MIN_LEFTOVER_BASE * DUST_MARGIN_BPS // 10_000 * pow(10, debt.config.decimals) // debt.price_base
    return ok(max(1, lo - margin)) or ok(lo)


def liquidation_pairs36(market: AaveMarketState, acct: AaveAccount) -> list[tuple[Reserve, Reserve]]:
    """Every (collateral bit set, borrowing bit set) pair, by collateral id then debt id."""
    cfg = acct.user_config
    rs = sorted(market.reserves, key=lambda r: r.id)
    colls = [r for r in rs if (cfg >> (2 * r.id + 1)) & 1]
    debts = [r for r in rs if (cfg >> (2 * r.id)) & 1]
    return [(c, d) for c in colls for d in debts]


def best_liquidation36(market: AaveMarketState, acct: AaveAccount, gas_cost_base: int,
                       min_profit_base: int, wallet_balances: Mapping[Address, int] | None = None,
                       liquidator: Address | None = None) -> LiquidationQuote | None:
    """The most profitable liquidation of ``acct`` on a 3.6 market that does not revert, or
    None (see ``aave_liquidation.best_liquidation`` for the profit and the wallet)."""
    w = walk(market, acct)
    if w.totals.health_factor_wad >= HEALTH_FACTOR_LIQUIDATION_THRESHOLD:
        return None
    wallet = None if wallet_balances is None else {a.lower(): v for a, v in wallet_balances.items()}
    best: LiquidationQuote | None = None
    for coll, debt in liquidation_pairs36(market, acct):
        cover = UINT256_MAX if wallet is None else min(wallet.get(debt.asset.lower(), 0), UINT256_MAX)
        if cover <= 0:
            continue
        try:
            quote = _quote(market, acct, coll, debt, cover, w, liquidator)
        except Liquidation36Invalid as e:
            if e.error != "MustNotLeaveDust":
                continue
            reserve_debt = v_token_balance(user_reserve(acct, debt.id).scaled_variable_debt,
                                           normalized_debt(debt, market.timestamp))
            quote = _largest_safe(market, acct, coll, debt, min(cover, reserve_debt), w, liquidator)
            if quote is None:
                continue
        if wallet is not None and quote.debt_to_repay > cover:
            continue
        if best is None or quote.bonus_value_base > best.bonus_value_base:
            best = quote
    if best is None or best.profit_base(gas_cost_base) < min_profit_base:
        return None
    return best

