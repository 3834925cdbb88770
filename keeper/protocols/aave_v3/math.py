"""Aave V3 (protocol 3.0.2) math primitives, copied down to the rounding.

Each function names its Solidity source. Solidity's checked arithmetic and the
assembly overflow guards revert; here they raise ``OverflowError`` (a uint256
went above ``2**256 - 1`` or below 0). A division by zero that reverts raises
``ZeroDivisionError``. Negative inputs are not uint256 and raise ``ValueError``.
"""

from __future__ import annotations

from functools import lru_cache

from keeper.protocols.aave_v3.model import Reserve, ReserveConfig
from keeper.units import BPS, HALF_BPS, HALF_RAY, HALF_WAD, RAY, SECONDS_PER_YEAR, UINT256_MAX, WAD

MAX_RESERVES_COUNT = 128  # Aave V3 ReserveConfiguration.MAX_RESERVES_COUNT


def _uint(*values: int) -> None:
    for v in values:
        if v < 0 or v > UINT256_MAX:
            raise ValueError(f"not a uint256: {v}")


def checked(value: int) -> int:
    """Solidity 0.8 checked arithmetic: revert (OverflowError) outside uint256."""
    if value < 0 or value > UINT256_MAX:
        raise OverflowError(f"uint256 overflow/underflow: {value}")
    return value


# ---------------------------------------------------------------- WadRayMath


def wad_mul(a: int, b: int) -> int:
    # Aave V3 WadRayMath.wadMul: half up; reverts when a > (MAX - HALF_WAD) / b
    _uint(a, b)
    if b != 0 and a > (UINT256_MAX - HALF_WAD) // b:
        raise OverflowError("wadMul overflow")
    return (a * b + HALF_WAD) // WAD


def wad_div(a: int, b: int) -> int:
    # Aave V3 WadRayMath.wadDiv: half up by b/2; reverts when b == 0 or a > (MAX - b/2) / WAD
    _uint(a, b)
    if b == 0:
        raise ZeroDivisionError("wadDiv by zero")
    if a > (UINT256_MAX - b // 2) // WAD:
        raise OverflowError("wadDiv overflow")
    return (a * WAD + b // 2) // b


def ray_mul(a: int, b: int) -> int:
    # Aave V3 WadRayMath.rayMul: half up; reverts when a > (MAX - HALF_RAY) / b
    _uint(a, b)
    if b != 0 and a > (UINT256_MAX - HALF_RAY) // b:
        raise OverflowError("rayMul overflow")
    return (a * b + HALF_RAY) // RAY


def ray_div(a: int, b: int) -> int:
    # Aave V3 WadRayMath.rayDiv: half up by b/2; reverts when b == 0 or a > (MAX - b/2) / RAY
    _uint(a, b)
    if b == 0:
        raise ZeroDivisionError("rayDiv by zero")
    if a > (UINT256_MAX - b // 2) // RAY:
        raise OverflowError("rayDiv overflow")
    return (a * RAY + b // 2) // b


# ------------------------------------------------------------ PercentageMath


def percent_mul(value: int, percentage: int) -> int:
    # Aave V3 PercentageMath.percentMul: half up; percentage 0 gives 0, never reverts
    _uint(value, percentage)
    if percentage != 0 and value > (UINT256_MAX - HALF_BPS) // percentage:
        raise OverflowError("percentMul overflow")
    return (value * percentage + HALF_BPS) // BPS


def percent_div(value: int, percentage: int) -> int:
    # Aave V3 PercentageMath.percentDiv: half up by percentage/2; reverts on 0
    _uint(value, percentage)
    if percentage == 0:
        raise ZeroDivisionError("percentDiv by zero")
    if value > (UINT256_MAX - percentage // 2) // BPS:
        raise OverflowError("percentDiv overflow")
    return (value * BPS + percentage // 2) // percentage


# ----------------------------------------------------------------- MathUtils


# Pure functions of three integers, asked with the same (rate, last update, block time) for
# every account of a reserve: memoized (a hit costs ~0.15 us, the compounded one ~4 us).
@lru_cache(maxsize=4096)
def calculate_linear_interest(rate_ray: int, last_update_timestamp: int, timestamp: int) -> int:
    # Aave V3 MathUtils.calculateLinearInterest (block.timestamp passed in)
    _uint(rate_ray, last_update_timestamp, timestamp)
    result = checked(rate_ray * checked(timestamp - last_update_timestamp))
    result //= SECONDS_PER_YEAR  # unchecked
    return checked(RAY + result)


@lru_cache(maxsize=4096)
def calculate_compounded_interest(rate_ray: int, last_update_timestamp: int, timestamp: int) -> int:
    # Aave V3 MathUtils.calculateCompoundedInterest: 3-term binomial, same division order
    _uint(rate_ray, last_update_timestamp, timestamp)
    exp = checked(timestamp - last_update_timestamp)
    if exp == 0:
        return RAY
    exp_minus_one = exp - 1
    exp_minus_two = exp - 2 if exp > 2 else 0
    base_power_two = ray_mul(rate_ray, rate_ray) // (SECONDS_PER_YEAR * SECONDS_PER_YEAR)
    base_power_three = ray_mul(base_power_two, rate_ray) // SECONDS_PER_YEAR
    second_term = checked(checked(exp * exp_minus_one) * base_power_two) // 2
    third_term = checked(checked(checked(exp * exp_minus_one) * exp_minus_two) * base_power_three) // 6
    first_term = checked(rate_ray * exp) // SECONDS_PER_YEAR
    return checked(checked(checked(RAY + first_term) + second_term) + third_term)


# -------------------------------------------------------------- ReserveLogic


def get_normalized_income(reserve: Reserve, timestamp: int) -> int:
    # Aave V3 ReserveLogic.getNormalizedIncome
    if reserve.last_update_timestamp == timestamp:
        return reserve.liquidity_index_ray
    growth = calculate_linear_interest(
        reserve.current_liquidity_rate_ray, reserve.last_update_timestamp, timestamp
    )
    return ray_mul(growth, reserve.liquidity_index_ray)


def get_normalized_debt(reserve: Reserve, timestamp: int) -> int:
    # Aave V3 ReserveLogic.getNormalizedDebt
    if reserve.last_update_timestamp == timestamp:
        return reserve.variable_borrow_index_ray
    growth = calculate_compounded_interest(
        reserve.current_variable_borrow_rate_ray, reserve.last_update_timestamp, timestamp
    )
    return ray_mul(growth, reserve.variable_borrow_index_ray)


# ------------------------------------------------------ ReserveConfiguration

# Aave V3 ReserveConfiguration: field -> (start bit, width). The masks there are
# the complement of ((1 << width) - 1) << start.
RESERVE_CONFIG_LAYOUT: dict[str, tuple[int, int]] = {
    "ltv_bps": (0, 16),
    "liquidation_threshold_bps": (16, 16),
    "liquidation_bonus_bps": (32, 16),
    "decimals": (48, 8),
    "active": (56, 1),
    "frozen": (57, 1),
    "borrowing_enabled": (58, 1),
    "stable_borrowing_enabled": (59, 1),
    "paused": (60, 1),
    "borrowable_in_isolation": (61, 1),
    "siloed_borrowing": (62, 1),
    "flashloan_enabled": (63, 1),
    "reserve_factor_bps": (64, 16),
    "borrow_cap": (80, 36),  # whole tokens
    "supply_cap": (116, 36),  # whole tokens
    "liquidation_protocol_fee_bps": (152, 16),
    "emode_category": (168, 8),
    "unbacked_mint_cap": (176, 36),  # decoded by bits_of, not kept in ReserveConfig
    "debt_ceiling": (212, 40),  # 2 decimals (DEBT_CEILING_DECIMALS)
}


def bits_of(data: int, name: str) -> int:
    """One raw field of a ReserveConfigurationMap (the getters of ReserveConfiguration)."""
    start, width = RESERVE_CONFIG_LAYOUT[name]
    return (data >> start) & ((1 << width) - 1)


def decode_reserve_config(data: int) -> ReserveConfig:
    # Aave V3 ReserveConfiguration.getParams / getFlags / getCaps / get* getters
    _uint(data)
    fields = {
        name: bool(bits_of(data, name)) if width == 1 else bits_of(data, name)
        for name, (_, width) in RESERVE_CONFIG_LAYOUT.items()
        if name != "unbacked_mint_cap"
    }
    return ReserveConfig(**fields)


# ------------------------------------------------------- UserConfiguration


def _check_index(reserve_id: int) -> None:
    # Aave V3 UserConfiguration: require(reserveIndex < MAX_RESERVES_COUNT, INVALID_RESERVE_INDEX)
    if not 0 <= reserve_id < MAX_RESERVES_COUNT:
        raise ValueError(f"invalid reserve index {reserve_id}")


def is_using_as_collateral_or_borrowing(user_config: int, reserve_id: int) -> bool:
    # Aave V3 UserConfiguration.isUsingAsCollateralOrBorrowing
    _check_index(reserve_id)
    return (user_config >> (reserve_id << 1)) & 3 != 0


def is_borrowing(user_config: int, reserve_id: int) -> bool:
    # Aave V3 UserConfiguration.isBorrowing (even bit)
    _check_index(reserve_id)
    return (user_config >> (reserve_id << 1)) & 1 != 0


def is_using_as_collateral(user_config: int, reserve_id: int) -> bool:
    # Aave V3 UserConfiguration.isUsingAsCollateral (odd bit)
    _check_index(reserve_id)
    return (user_config >> ((reserve_id << 1) + 1)) & 1 != 0


def is_empty(user_config: int) -> bool:
    # Aave V3 UserConfiguration.isEmpty
    return user_config == 0


def reserve_ids_in_use(user_config: int) -> list[int]:
    """Ids whose collateral or borrowing bit is set, ascending (the loop order of GenericLogic)."""
    _uint(user_config)
    ids, i = [], 0
    while user_config:
        if user_config & 3:
            ids.append(i)
        user_config >>= 2
        i += 1
    return ids


# ----------------------------------------------------------------- EModeLogic


def is_in_emode_category(user_category: int, asset_category: int) -> bool:
    # Aave V3 EModeLogic.isInEModeCategory
    return user_category != 0 and asset_category == user_category
