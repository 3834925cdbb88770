"""Aave V3 (protocol 3.0.2) liquidation planning, pure: no IO, ints only.

``plan_liquidation`` is ``LiquidationLogic.executeLiquidationCall`` run off-chain on a
market state and an account read at the same block: the same close factor, the same
``_calculateAvailableCollateralToLiquidate`` (same operand order, same rounding) and
the same reverts (``ValidationLogic.validateLiquidationCall``, the token burns), so
its ``debt_to_repay`` and ``collateral_to_receive`` are the ``LiquidationCall`` event's
``debtToCover`` and ``liquidatedCollateralAmount`` to the wei, when the call is mined
at ``market.timestamp`` (pass ``replace(market, timestamp=t)`` to plan for a later
block: the normalized indices follow the timestamp; stable debt is as read).

Modelled as ``liquidationCall(..., receiveAToken=false)``: the liquidator receives
``collateral_to_receive`` of the underlying. Not modelled: the PriceOracleSentinel
(L2 markets only; none on L1/devnet), the ISOLATED_COLLATERAL role.

``best_liquidation`` picks, over every (collateral, debt) pair of the account, the
liquidation with the largest profit = value of the collateral received - value of the
debt repaid - gas, valued at each asset's own oracle price (``Reserve.price_base``,
AaveOracle.getAssetPrice(asset)), floored. For one pair that profit is (up to the
floors) proportional to the debt repaid: the collateral received is debt * price
ratio * bonus * (1 - fee share of the bonus). So if it is positive, the largest amount
allowed is optimal: min(debt_to_cover, close-factor cap, wallet). The exceptions:
* the collateral cap: once the bonus-inclusive collateral exceeds the user's balance
  Aave takes the whole balance and asks for less debt (``debtAmountNeeded``); more
  debt_to_cover then changes nothing, so the max is still optimal (ties);
* wei-level rounding (floor of baseCollateral, half-up percentMul/percentDiv, floored
  values) can make max - 1 worth up to about one base unit more than max; ignored;
* in e-mode with a category price source, the liquidation converts at the category
  price but the tokens are worth their own prices: the per-unit margin can then be
  negative, and every amount of that pair loses (a profitable pair wins over it, and
  min_profit_base >= 0 rejects it when it is the best there is).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from keeper.errors import SourceError
from keeper.protocols.aave_v3.math import (
    checked,
    get_normalized_debt,
    get_normalized_income,
    is_borrowing,
    is_in_emode_category,
    is_using_as_collateral,
    percent_div,
    percent_mul,
    ray_div,
    ray_mul,
    reserve_ids_in_use,
)
from keeper.protocols.aave_v3.fast import fast_totals, view_for
from keeper.health.status import HEALTH_FACTOR_LIQUIDATION_THRESHOLD
from keeper.model import Address
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState, Reserve, UserReserve
from keeper.units import UINT256_MAX

# Aave V3 LiquidationLogic constants
DEFAULT_LIQUIDATION_CLOSE_FACTOR = 5_000  # 0.5e4 bps: HF in (0.95, 1)
MAX_LIQUIDATION_CLOSE_FACTOR = 10_000  # 1e4 bps: HF <= 0.95
CLOSE_FACTOR_HF_THRESHOLD = 950_000_000_000_000_000  # 0.95e18

# Aave V3 Errors.sol: the reverts plan_liquidation reproduces
ERRORS = {
    "INVALID_BURN_AMOUNT": "25",
    "RESERVE_INACTIVE": "27",
    "RESERVE_PAUSED": "29",
    "HEALTH_FACTOR_NOT_BELOW_THRESHOLD": "45",
    "COLLATERAL_CANNOT_BE_LIQUIDATED": "46",
    "SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER": "47",
    "DIVISION_BY_ZERO": "panic 0x12",  # a zero oracle price or liquidation bonus
}


class LiquidationInvalid(ValueError):
    """liquidationCall would revert; ``error`` is the Errors.sol name, ``code`` its revert string."""

    def __init__(self, error: str) -> None:
        self.error, self.code = error, ERRORS[error]
        super().__init__(f"{error} ({self.code})")


@dataclass(frozen=True, slots=True)
class LiquidationQuote:
    """One liquidationCall, as Aave would execute it. Token amounts in token base units;
    values in the oracle's base unit (1e8 USD), at each asset's own price, floored."""

    collateral_asset: Address
    debt_asset: Address
    debt_to_repay: int  # actualDebtToLiquidate: the event's debtToCover, what the liquidator pays
    collateral_to_receive: int  # the event's liquidatedCollateralAmount (after the protocol fee)
    protocol_fee_collateral: int  # collateral sent to the treasury (aTokens)
    collateral_value_base: int  # collateral_to_receive at the collateral's price
    debt_value_base: int  # debt_to_repay at the debt asset's price
    bonus_value_base: int  # collateral_value_base - debt_value_base (may be < 0)
    close_factor_bps: int  # 5000 or 10000
    health_factor_wad: int  # the user's HF before the liquidation
    # 3.6 (aave36_liquidation): what to pass as liquidationCall's debtToCover when it is not
    # debt_to_repay (the wallet / type(uint256).max when the Pool's own cap decides)
    debt_to_cover: int | None = None
    leaves_deficit: bool = False  # 3.6: all collateral taken, the rest of the debt is burned
    # collateral leaving the borrower: to the liquidator + the protocol fee before the treasury
    # transfer's cap (the protocol's own test for "all of it"; keeper.protocols.aave_v3.after)
    collateral_taken: int = 0

    def profit_base(self, gas_cost_base: int = 0) -> int:
        return self.bonus_value_base - gas_cost_base


def user_reserve(acct: AaveAccount, reserve_id: int) -> UserReserve:
    """The account's balances in one reserve (zeros when it has no row for it)."""
    for ur in acct.reserves:
        if ur.reserve_id == reserve_id:
            return ur
    return UserReserve(reserve_id, 0, 0, 0)


def _unit(decimals: int) -> int:
    return pow(10, decimals, 2**256)  # unchecked 10 ** decimals


def _zero(address: Address) -> bool:
    return not address or int(address, 16) == 0


def _configuration_data(market: AaveMarketState, acct: AaveAccount, coll: Reserve,
                        debt: Reserve) -> tuple[int, int, int]:  # fmt: skip
    # Aave V3 LiquidationLogic._getConfigurationData -> (collateral price, debt price, bonus);
    # the prices are oracle.getAssetPrice(priceSource) of _calculateAvailableCollateralToLiquidate
    bonus = coll.config.liquidation_bonus_bps
    coll_price, debt_price = coll.price_base, debt.price_base
    if acct.emode != 0:
        category = market.emode_categories.get(acct.emode)
        if category is None:
            raise SourceError(f"e-mode category {acct.emode} missing from the market state")
        has_source = not _zero(category.price_source)
        if is_in_emode_category(acct.emode, coll.config.emode_category):
            bonus = category.liquidation_bonus_bps
            if has_source:
                coll_price = category.price_base
        # "when in eMode, debt will always be in the same eMode category": no category check
        if has_source:
            debt_price = category.price_base
    return coll_price, debt_price, bonus


def _quote(market: AaveMarketState, acct: AaveAccount, coll: Reserve, debt: Reserve,
           debt_to_cover: int, hf: int) -> LiquidationQuote:  # fmt: skip
    if not 0 <= debt_to_cover <= UINT256_MAX:
        raise ValueError(f"debt_to_cover is not a uint256: {debt_to_cover}")
    ts, cfg = market.timestamp, acct.user_config
    # _calculateDebt: Helpers.getUserCurrentDebt after debtReserve.updateState
    debt_row = user_reserve(acct, debt.id)
    debt_index = get_normalized_debt(debt, ts)
    variable = ray_mul(debt_row.scaled_variable_debt, debt_index) if debt_row.scaled_variable_debt else 0
    total_debt = checked(debt_row.stable_debt + variable)
    close_factor = (
        DEFAULT_LIQUIDATION_CLOSE_FACTOR if hf > CLOSE_FACTOR_HF_THRESHOLD else MAX_LIQUIDATION_CLOSE_FACTOR
    )
    max_liquidatable = percent_mul(total_debt, close_factor)
    actual_debt = min(debt_to_cover, max_liquidatable)

    # ValidationLogic.validateLiquidationCall (same order of requires)
    if not (coll.config.active and debt.config.active):
        raise LiquidationInvalid("RESERVE_INACTIVE")
    if coll.config.paused or debt.config.paused:
        raise LiquidationInvalid("RESERVE_PAUSED")
    if hf >= HEALTH_FACTOR_LIQUIDATION_THRESHOLD:
        raise LiquidationInvalid("HEALTH_FACTOR_NOT_BELOW_THRESHOLD")
    if coll.config.liquidation_threshold_bps == 0 or not is_using_as_collateral(cfg, coll.id):
        raise LiquidationInvalid("COLLATERAL_CANNOT_BE_LIQUIDATED")
    if total_debt == 0:
        raise LiquidationInvalid("SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER")

    coll_price, debt_price, bonus = _configuration_data(market, acct, coll, debt)
    income = get_normalized_income(coll, ts)
    scaled_coll = user_reserve(acct, coll.id).scaled_a_token
    user_collateral = ray_mul(scaled_coll, income)  # AToken.balanceOf

    # _calculateAvailableCollateralToLiquidate
    coll_unit, debt_unit = _unit(coll.config.decimals), _unit(debt.config.decimals)
    fee_pct = coll.config.liquidation_protocol_fee_bps
    try:
        base_collateral = checked(checked(debt_price * actual_debt) * coll_unit) // checked(
            coll_price * debt_unit
        )
        max_collateral = percent_mul(base_collateral, bonus)
        if max_collateral > user_collateral:
            collateral_amount = user_collateral
            debt_needed = percent_div(
                checked(checked(coll_price * collateral_amount) * debt_unit)
                // checked(debt_price * coll_unit),
                bonus,
            )
        else:
            collateral_amount, debt_needed = max_collateral, actual_debt
    except ZeroDivisionError:
        raise LiquidationInvalid("DIVISION_BY_ZERO") from None
    fee = 0
    if fee_pct != 0:
        bonus_collateral = checked(collateral_amount - percent_div(collateral_amount, bonus))
        fee = percent_mul(bonus_collateral, fee_pct)
    to_liquidator = checked(collateral_amount - fee)

    # _burnDebtTokens: VariableDebtToken.burn requires amount.rayDiv(index) != 0
    if variable >= debt_needed and ray_div(debt_needed, debt_index) == 0:
        raise LiquidationInvalid("INVALID_BURN_AMOUNT")
    # _burnCollateralATokens: AToken.burn, same require (receiveAToken = false)
    burned_scaled = ray_div(to_liquidator, income)
    if burned_scaled == 0:
        raise LiquidationInvalid("INVALID_BURN_AMOUNT")
    if fee != 0:  # the treasury transfer, capped at what is left ("1 wei imprecision")
        left = scaled_coll - burned_scaled
        if ray_div(fee, income) > left:
            fee = ray_mul(left, income)

    coll_value = to_liquidator * coll.price_base // coll_unit
    debt_value = debt_needed * debt.price_base // debt_unit
    return LiquidationQuote(
        collateral_asset=coll.asset,
        debt_asset=debt.asset,
        debt_to_repay=debt_needed,
        collateral_to_receive=to_liquidator,
        protocol_fee_collateral=fee,
        collateral_value_base=coll_value,
        debt_value_base=debt_value,
        bonus_value_base=coll_value - debt_value,
        close_factor_bps=close_factor,
        health_factor_wad=hf,
        collateral_taken=collateral_amount,
    )


def plan_liquidation(market: AaveMarketState, acct: AaveAccount, collateral_asset: Address,
                     debt_asset: Address, debt_to_cover: int) -> LiquidationQuote:  # fmt: skip
    """What ``Pool.liquidationCall(collateral_asset, debt_asset, user, debt_to_cover, false)``
    does at ``market.timestamp``. ``debt_to_cover = UINT256_MAX``: as much as the close factor
    allows (Aave just takes min(debt_to_cover, cap)). Raises LiquidationInvalid where the
    call reverts, KeyError for an asset the market does not list, SourceError on
    inconsistent inputs."""
    coll, debt = market.by_asset(collateral_asset), market.by_asset(debt_asset)
    hf = _health_factor(market, acct)
    return _quote(market, acct, coll, debt, debt_to_cover, hf)


def _health_factor(market: AaveMarketState, acct: AaveAccount) -> int:
    """calculateUserAccountData's health factor, on the market's memoized view (equal to it:
    keeper.protocols.aave_v3.fast; the follow-ups of one block plan on the same few markets)."""
    return fast_totals(view_for(market), acct)[4]


def liquidation_pairs(market: AaveMarketState, acct: AaveAccount) -> list[tuple[Reserve, Reserve]]:
    """Every (collateral, debt) pair liquidationCall could take: collateral bit set with
    LT != 0, borrowing bit set; by collateral id, then debt id."""
    by_id = {r.id: r for r in market.reserves}
    ids = [i for i in reserve_ids_in_use(acct.user_config) if i in by_id]
    colls = [by_id[i] for i in ids if is_using_as_collateral(acct.user_config, i)
             and by_id[i].config.liquidation_threshold_bps != 0]  # fmt: skip
    debts = [by_id[i] for i in ids if is_borrowing(acct.user_config, i)]
    return [(c, d) for c in colls for d in debts]


def best_liquidation(market: AaveMarketState, acct: AaveAccount, gas_cost_base: int,
                     min_profit_base: int, wallet_balances: Mapping[Address, int] | None = None,
                     ) -> LiquidationQuote | None:  # fmt: skip
    """The most profitable liquidation of ``acct``, or None (not liquidatable, or the best
    profit, ``bonus_value_base - gas_cost_base``, is below ``min_profit_base``).

    Per pair the amount is the largest allowed (see the module doc): the close-factor cap,
    and with ``wallet_balances`` (own capital: asset -> balance of the liquidator, keys
    case-insensitive) at most the wallet's balance of the debt token; a pair whose debt
    token the wallet lacks is skipped. Ties go to the first pair (collateral id, debt id).
    """
    hf = _health_factor(market, acct)
    if hf >= HEALTH_FACTOR_LIQUIDATION_THRESHOLD:
        return None
    wallet = None if wallet_balances is None else {a.lower(): v for a, v in wallet_balances.items()}
    best: LiquidationQuote | None = None
    for coll, debt in liquidation_pairs(market, acct):
        cover = UINT256_MAX if wallet is None else min(wallet.get(debt.asset.lower(), 0), UINT256_MAX)
        if cover <= 0:
            continue
        try:
            quote = _quote(market, acct, coll, debt, cover, hf)
        except LiquidationInvalid:
            continue
        if best is None or quote.bonus_value_base > best.bonus_value_base:
            best = quote
    if best is None or best.profit_base(gas_cost_base) < min_profit_base:
        return None
    return best
