"""Aave V3 3.6 account math, pure: no IO, ints only. Beside ``aave_v3`` (3.0.2), not instead.

What 3.6 (npm @aave-dao/aave-v3-origin 3.6.0, ``src/contracts/protocol/libraries``) changed
for the health factor, each mirrored here:

* balances (``helpers/TokenMath.sol``, 3.5): collateral = ``rayMulFloor(scaled, income)``,
  debt = ``rayMulCeil(scaled, variableBorrowIndex)``; debt in base is ``mulDivCeil(debt,
  price, unit)``, collateral in base is floored;
* HF (``GenericLogic.calculateUserAccountData``) = ``wadDiv(sum(collateral_i * LT_i), debt)
  / 1e4``, not ``wadDiv(percentMul(collateral, floor(avg LT)), debt)``; the average LT and
  LTV it returns are still floored averages;
* every collateral bit counts (no ``LT != 0`` test); the LTV is ``getUserReserveLtv``;
* e-mode (3.2): no price source; a category's LT applies to collateral whose bit is set in
  the category's ``collateralBitmap``, its LTV unless the ``ltvzeroBitmap`` bit is set;
* no stable debt (3.2);
* compounded interest (``MathUtils.calculateCompoundedInterest``): ``x = rate * dt / year``,
  ``RAY + x + rayMul(x, x / 2 + rayMul(x, x / 6))``;
* ``calculateAvailableBorrows`` uses ``percentMulFloor``.

``account_data36(market, acct)`` equals ``Pool.getUserAccountData`` of a 3.6 Pool to the wei
when both were read at the same block. ``Evaluator36`` is what the engine asks of a market
(positions, status, drop to liquidation) on a 3.6 market state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from keeper.errors import SourceError
from keeper.protocols.aave_v3.math import checked, ray_mul, reserve_ids_in_use, wad_div
from keeper.protocols.aave_v3.health import UserAccountTotals, _price_inputs
from keeper.health.status import HEALTH_FACTOR_LIQUIDATION_THRESHOLD, Thresholds, classify
from keeper.model import Position
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState, AccountData, EModeCategory, Reserve
from keeper.units import BPS, RAY, SECONDS_PER_YEAR, UINT256_MAX

VERSION = (3, 6)


def is_v36(market: AaveMarketState) -> bool:
    """True for a market read from a Pool with the 3.2+ interface (math of 3.6)."""
    return getattr(market, "version", (3, 0)) >= (3, 2)


# ---------------------------------------------------------------- rounding (WadRayMath, MathUtils)


def _guard_mul(a: int, b: int) -> int:
    if a < 0 or b < 0:
        raise ValueError(f"not a uint256: {a}, {b}")
    if b != 0 and a > UINT256_MAX // b:
        raise OverflowError("mul overflow")
    return a * b


def ray_mul_floor(a: int, b: int) -> int:
    # Aave 3.6 WadRayMath.rayMulFloor
    return _guard_mul(a, b) // RAY


def ray_mul_ceil(a: int, b: int) -> int:
    # Aave 3.6 WadRayMath.rayMulCeil
    return -(-_guard_mul(a, b) // RAY)


def ray_div_floor(a: int, b: int) -> int:
    # Aave 3.6 WadRayMath.rayDivFloor
    if b == 0:
        raise ZeroDivisionError("rayDivFloor by zero")
    return _guard_mul(a, RAY) // b


def ray_div_ceil(a: int, b: int) -> int:
    # Aave 3.6 WadRayMath.rayDivCeil
    if b == 0:
        raise ZeroDivisionError("rayDivCeil by zero")
    return -(-_guard_mul(a, RAY) // b)


def mul_div_ceil(a: int, b: int, c: int) -> int:
    # Aave 3.6 MathUtils.mulDivCeil
    if c == 0:
        raise ZeroDivisionError("mulDivCeil by zero")
    return -(-_guard_mul(a, b) // c)


def percent_mul_floor(value: int, percentage: int) -> int:
    # Aave 3.6 PercentageMath.percentMulFloor
    return _guard_mul(value, percentage) // BPS


def percent_div_ceil(value: int, percentage: int) -> int:
    # Aave 3.6 PercentageMath.percentDivCeil
    if percentage == 0:
        raise ZeroDivisionError("percentDivCeil by zero")
    return -(-_guard_mul(value, BPS) // percentage)


def compounded_interest(rate_ray: int, last_update: int, timestamp: int) -> int:
    # Aave 3.6 MathUtils.calculateCompoundedInterest (unchecked block)
    exp = checked(timestamp - last_update)
    if exp == 0:
        return RAY
    x = rate_ray * exp // SECONDS_PER_YEAR
    return RAY + x + ray_mul(x, x // 2 + ray_mul(x, x // 6))


def normalized_income(reserve: Reserve, timestamp: int) -> int:
    # Aave 3.6 ReserveLogic.getNormalizedIncome (linear interest, unchanged since 3.0)
    if reserve.last_update_timestamp == timestamp:
        return reserve.liquidity_index_ray
    dt = checked(timestamp - reserve.last_update_timestamp)
    linear = RAY + checked(reserve.current_liquidity_rate_ray * dt) // SECONDS_PER_YEAR
    return ray_mul(linear, reserve.liquidity_index_ray)


def normalized_debt(reserve: Reserve, timestamp: int) -> int:
    # Aave 3.6 ReserveLogic.getNormalizedDebt
    if reserve.last_update_timestamp == timestamp:
        return reserve.variable_borrow_index_ray
    growth = compounded_interest(reserve.current_variable_borrow_rate_ray,
                                 reserve.last_update_timestamp, timestamp)
    return ray_mul(growth, reserve.variable_borrow_index_ray)


def a_token_balance(scaled: int, income: int) -> int:
    # Aave 3.6 TokenMath.getATokenBalance (AToken.balanceOf rounds down)
    return ray_mul_floor(scaled, income)


def v_token_balance(scaled: int, index: int) -> int:
    # Aave 3.6 TokenMath.getVTokenBalance (VariableDebtToken.balanceOf rounds up)
    return ray_mul_ceil(scaled, index)


# ---------------------------------------------------------------- e-mode (EModeConfiguration)


def on_bitmap(bitmap: int, reserve_id: int) -> bool:
    # Aave 3.6 EModeConfiguration.isReserveEnabledOnBitmap
    return (bitmap >> reserve_id) & 1 == 1


def category(market: AaveMarketState, emode: int) -> EModeCategory | None:
    if emode == 0:
        return None
    cat = market.emode_categories.get(emode)
    if cat is None:
        raise SourceError(f"e-mode category {emode} missing from the market state")
    return cat


def reserve_ltv(reserve: Reserve, cat: EModeCategory | None) -> int:
    # Aave 3.6 ValidationLogic.getUserReserveLtv
    if cat is not None and on_bitmap(cat.collateral_bitmap, reserve.id):
        return 0 if on_bitmap(cat.ltvzero_bitmap, reserve.id) else cat.ltv_bps
    return reserve.config.ltv_bps


def reserve_lt(reserve: Reserve, cat: EModeCategory | None) -> int:
    # the LT GenericLogic.calculateUserAccountData applies to this collateral
    if cat is not None and on_bitmap(cat.collateral_bitmap, reserve.id):
        return cat.liquidation_threshold_bps
    return reserve.config.liquidation_threshold_bps


def reserve_bonus(reserve: Reserve, cat: EModeCategory | None) -> int:
    # the liquidation bonus LiquidationLogic.executeLiquidationCall applies to this collateral
    if cat is not None and on_bitmap(cat.collateral_bitmap, reserve.id):
        return cat.liquidation_bonus_bps
    return reserve.config.liquidation_bonus_bps


# ---------------------------------------------------------------- account data


@dataclass(frozen=True, slots=True)
class Walk:
    totals: UserAccountTotals
    weighted_lt: int  # sum(collateral_base_i * LT_i), the HF's numerator
    collateral: dict[int, int]  # reserve id -> collateral in base (bit set)


PriceOf = Callable[[Reserve], int]


def _own_price(r: Reserve) -> int:
    return r.price_base


def walk(market: AaveMarketState, acct: AaveAccount, price_of: PriceOf = _own_price) -> Walk:
    # Aave 3.6 GenericLogic.calculateUserAccountData (+ _getUserBalanceInBaseCurrency,
    # _getUserDebtInBaseCurrency); ``price_of`` moves prices for what-ifs
    cfg = acct.user_config
    if cfg == 0:
        return Walk(UserAccountTotals(0, 0, 0, 0, UINT256_MAX, False), 0, {})
    cat = category(market, acct.emode)
    by_id = {r.id: r for r in market.reserves}
    rows = {ur.reserve_id: ur for ur in acct.reserves}
    ts = market.timestamp
    total_coll = total_debt = avg_ltv = weighted = 0
    zero_ltv = False
    values: dict[int, int] = {}
    for i in reserve_ids_in_use(cfg):
        r, ur = by_id.get(i), rows.get(i)
        if r is None:
            raise SourceError(f"account {acct.account} uses reserve {i}, absent from the market state")
        if ur is None:
            raise SourceError(f"account {acct.account} uses reserve {i} but no balances were read")
        unit = pow(10, r.config.decimals, 2**256)
        price = price_of(r)
        if (cfg >> (2 * i + 1)) & 1:
            value = checked(a_token_balance(ur.scaled_a_token, normalized_income(r, ts)) * price) // unit
            values[i] = value
            total_coll = checked(total_coll + value)
            ltv = reserve_ltv(r, cat)
            if ltv == 0:
                zero_ltv = True
            else:
                avg_ltv = checked(avg_ltv + value * ltv)
            weighted = checked(weighted + value * reserve_lt(r, cat))
        if (cfg >> (2 * i)) & 1:
            debt = v_token_balance(ur.scaled_variable_debt, normalized_debt(r, ts))
            total_debt = checked(total_debt + mul_div_ceil(debt, price, unit))
    hf = UINT256_MAX if total_debt == 0 else wad_div(weighted, total_debt) // BPS
    avg_ltv = avg_ltv // total_coll if total_coll else 0
    avg_lt = weighted // total_coll if total_coll else 0
    return Walk(UserAccountTotals(total_coll, total_debt, avg_ltv, avg_lt, hf, zero_ltv), weighted, values)


def calculate_user_account_data36(market: AaveMarketState, acct: AaveAccount) -> UserAccountTotals:
    # Aave 3.6 GenericLogic.calculateUserAccountData
    return walk(market, acct).totals


def account_data36(market: AaveMarketState, acct: AaveAccount) -> AccountData:
    # Aave 3.6 PoolLogic.executeGetUserAccountData (what Pool.getUserAccountData returns)
    t = walk(market, acct).totals
    available = percent_mul_floor(t.total_collateral_base, t.avg_ltv_bps)  # calculateAvailableBorrows
    available = available - t.total_debt_base if available > t.total_debt_base else 0
    return AccountData(t.total_collateral_base, t.total_debt_base, available,
                       t.avg_liquidation_threshold_bps, t.avg_ltv_bps, t.health_factor_wad)


def hf36(market: AaveMarketState, acct: AaveAccount) -> int:
    return walk(market, acct).totals.health_factor_wad


# ---------------------------------------------------------------- what-ifs and positions


def drop_to_liquidation_bps36(market: AaveMarketState, acct: AaveAccount, w: Walk | None = None) -> int | None:
    """Smallest drop in bps of the main collateral's price (the largest collateral, lowest id
    on ties) with HF < 1e18, checked with the exact math; 0 when liquidatable already; None
    without debt or collateral, or when even a 100% drop leaves HF >= 1."""
    w = w or walk(market, acct)
    if w.totals.total_debt_base == 0 or not w.collateral:
        return None
    if w.totals.health_factor_wad < HEALTH_FACTOR_LIQUIDATION_THRESHOLD:
        return 0
    main = max(w.collateral, key=lambda i: (w.collateral[i], -i))

    def liquidatable(bps: int) -> bool:
        def price_of(r: Reserve) -> int:
            return r.price_base * (BPS - bps) // BPS if r.id == main else r.price_base
        return walk(market, acct, price_of).totals.health_factor_wad < HEALTH_FACTOR_LIQUIDATION_THRESHOLD

    if not liquidatable(BPS):
        return None
    lo, hi = 0, BPS  # not at lo, liquidatable at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if liquidatable(mid):
            hi = mid
        else:
            lo = mid
    return hi


def position36(market: AaveMarketState, acct: AaveAccount, protocol: str, thresholds: Thresholds,
               with_drop: bool = True) -> Position:
    """The model.Position of one account on a 3.6 market (see ``aave_v3.position_from``)."""
    w = walk(market, acct)
    t = w.totals
    hf = None if t.total_debt_base == 0 else t.health_factor_wad
    main = max(w.collateral, key=lambda i: (w.collateral[i], -i)) if w.collateral else None
    assets, reliable = _price_inputs(market, acct)
    return Position(
        protocol=protocol, market=market.pool, account=acct.account, block=market.block,
        collateral_base=t.total_collateral_base, debt_base=t.total_debt_base,
        health_factor_wad=hf, liquidation_threshold_bps=t.avg_liquidation_threshold_bps,
        status=classify(hf, thresholds), reliable=reliable,
        main_collateral=None if main is None else next(r.symbol for r in market.reserves if r.id == main),
        drop_to_liquidation_bps=drop_to_liquidation_bps36(market, acct, w) if with_drop else None,
        assets=assets)


class Evaluator36:
    """Health math bound to one 3.6 market state (what ``AaveV3Adapter.evaluator`` returns)."""

    def __init__(self, market: AaveMarketState):
        self.market = market

    def position(self, acct: AaveAccount, thresholds: Thresholds, with_drop: bool) -> Position:
        return position36(self.market, acct, "aave_v3", thresholds, with_drop)

    def drop(self, acct: AaveAccount) -> int | None:
        return drop_to_liquidation_bps36(self.market, acct)
