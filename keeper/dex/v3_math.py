"""Uniswap V3 core math, pure: ints only, no IO. Mirrors npm ``@uniswap/v3-core`` 1.0.1
(``contracts/libraries``: FullMath, UnsafeMath, TickMath, SqrtPriceMath, SwapMath,
LiquidityMath) down to the rounding, so a swap computed here equals the pool's to the wei.

Solidity's uint256 wrap-around is reproduced where the contracts rely on it
(``getNextSqrtPriceFromAmount0RoundingUp`` detects an overflowing product by dividing
back); every ``require`` that fails raises :class:`V3MathError` with the contract's reason.
"""

from __future__ import annotations

Q96 = 1 << 96
UINT256 = 1 << 256
UINT160_MAX = (1 << 160) - 1
UINT128_MAX = (1 << 128) - 1
MIN_TICK = -887272
MAX_TICK = -MIN_TICK
MIN_SQRT_RATIO = 4295128739
MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342
FEE_DENOMINATOR = 10**6  # fees are pips: 500 = 0.05%

# TickMath.getSqrtRatioAtTick: ratio factors for bits 0x2 .. 0x80000 of |tick| (Q128.128)
_FACTORS = (
    0xFFF97272373D413259A46990580E213A, 0xFFF2E50F5F656932EF12357CF3C7FDCC,
    0xFFE5CACA7E10E4E61C3624EAA0941CD0, 0xFFCB9843D60F6159C9DB58835C926644,
    0xFF973B41FA98C081472E6896DFB254C0, 0xFF2EA16466C96A3843EC78B326B52861,
    0xFE5DEE046A99A2A811C461F1969C3053, 0xFCBE86C7900A88AEDCFFC83B479AA3A4,
    0xF987A7253AC413176F2B074CF7815E54, 0xF3392B0822B70005940C7A398E4B70F3,
    0xE7159475A2C29B7443B29C7FA6E889D9, 0xD097F3BDFD2022B8845AD8F792AA5825,
    0xA9F746462D870FDF8A65DC1F90E061E5, 0x70D869A156D2A1B890BB3DF62BAF32F7,
    0x31BE135F97D08FD981231505542FCFA6, 0x9AA508B5B7A84E1C677DE54F3E99BC9,
    0x5D6AF8DEDB81196699C329225EE604, 0x2216E584F5FA1EA926041BEDFE98,
    0x48A170391F7DC42444E8FA2,
)  # fmt: skip


class V3MathError(ValueError):
    """A require of the Uniswap V3 libraries failed (the pool would revert)."""


# ------------------------------------------------------------------ FullMath / UnsafeMath


def mul_div(a: int, b: int, d: int) -> int:
    """FullMath.mulDiv: floor(a * b / d); reverts if d == 0 or the result exceeds uint256."""
    if d == 0:
        raise V3MathError("mulDiv by zero")
    r = a * b // d
    if r >= UINT256:
        raise V3MathError("mulDiv overflow")
    return r


def mul_div_rounding_up(a: int, b: int, d: int) -> int:
    """FullMath.mulDivRoundingUp."""
    r = mul_div(a, b, d)
    if a * b % d:
        if r >= UINT256 - 1:
            raise V3MathError("mulDivRoundingUp overflow")
        r += 1
    return r


def div_rounding_up(x: int, y: int) -> int:
    """UnsafeMath.divRoundingUp (y > 0)."""
    return x // y + (1 if x % y else 0)


# ------------------------------------------------------------------ TickMath


def get_sqrt_ratio_at_tick(tick: int) -> int:
    """TickMath.getSqrtRatioAtTick: sqrt(1.0001^tick) * 2^96, rounded up."""
    abs_tick = abs(tick)
    if abs_tick > MAX_TICK:
        raise V3MathError("T")
    ratio = 0xFFFCB933BD6FAD37AA2D162D1A594001 if abs_tick & 1 else 1 << 128
    for bit, factor in enumerate(_FACTORS, start=1):
        if abs_tick >> bit & 1:
            ratio = ratio * factor >> 128
    if tick > 0:
        ratio = (UINT256 - 1) // ratio
    return (ratio >> 32) + (1 if ratio % (1 << 32) else 0)


def get_tick_at_sqrt_ratio(sqrt_price_x96: int) -> int:
    """TickMath.getTickAtSqrtRatio: the greatest tick with getSqrtRatioAtTick(tick) <= price.

    The contract gets there with a log2 approximation and a check of its two candidates;
    the definition is exact, so a bisection over the monotone getSqrtRatioAtTick gives the
    same tick."""
    if not MIN_SQRT_RATIO <= sqrt_price_x96 < MAX_SQRT_RATIO:
        raise V3MathError("R")
    lo, hi = MIN_TICK, MAX_TICK  # ratio(lo) <= price < ratio(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if get_sqrt_ratio_at_tick(mid) <= sqrt_price_x96:
            lo = mid
        else:
            hi = mid
    return lo


# ------------------------------------------------------------------ SqrtPriceMath


def _to_uint160(x: int) -> int:
    if x > UINT160_MAX:
        raise V3MathError("toUint160 overflow")
    return x


def next_sqrt_price_from_amount0_rounding_up(sqrt_p: int, liquidity: int, amount: int, add: bool) -> int:
    """SqrtPriceMath.getNextSqrtPriceFromAmount0RoundingUp."""
    if amount == 0:
        return sqrt_p
    numerator1 = liquidity << 96
    product = amount * sqrt_p % UINT256  # uint256 wraps; the contract divides back to detect it
    fits = product // amount == sqrt_p
    if add:
        if fits:
            denominator = (numerator1 + product) % UINT256
            if denominator >= numerator1:
                return mul_div_rounding_up(numerator1, sqrt_p, denominator)
        return div_rounding_up(numerator1, numerator1 // sqrt_p + amount)
    if not (fits and numerator1 > product):
        raise V3MathError("getNextSqrtPriceFromAmount0RoundingUp: price underflow")
    return _to_uint160(mul_div_rounding_up(numerator1, sqrt_p, numerator1 - product))


def next_sqrt_price_from_amount1_rounding_down(sqrt_p: int, liquidity: int, amount: int, add: bool) -> int:
    """SqrtPriceMath.getNextSqrtPriceFromAmount1RoundingDown."""
    small = amount <= UINT160_MAX
    if add:
        quotient = (amount << 96) // liquidity if small else mul_div(amount, Q96, liquidity)
        return _to_uint160(sqrt_p + quotient)
    quotient = (div_rounding_up(amount << 96, liquidity) if small
                else mul_div_rounding_up(amount, Q96, liquidity))  # fmt: skip
    if sqrt_p <= quotient:
        raise V3MathError("getNextSqrtPriceFromAmount1RoundingDown: price underflow")
    return sqrt_p - quotient


def next_sqrt_price_from_input(sqrt_p: int, liquidity: int, amount_in: int, zero_for_one: bool) -> int:
    """SqrtPriceMath.getNextSqrtPriceFromInput."""
    if sqrt_p <= 0 or liquidity <= 0:
        raise V3MathError("getNextSqrtPriceFromInput: zero price or liquidity")
    if zero_for_one:
        return next_sqrt_price_from_amount0_rounding_up(sqrt_p, liquidity, amount_in, True)
    return next_sqrt_price_from_amount1_rounding_down(sqrt_p, liquidity, amount_in, True)


def amount0_delta(sqrt_a: int, sqrt_b: int, liquidity: int, round_up: bool) -> int:
    """SqrtPriceMath.getAmount0Delta (unsigned)."""
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    if sqrt_a <= 0:
        raise V3MathError("getAmount0Delta: zero price")
    numerator1, numerator2 = liquidity << 96, sqrt_b - sqrt_a
    if round_up:
        return div_rounding_up(mul_div_rounding_up(numerator1, numerator2, sqrt_b), sqrt_a)
    return mul_div(numerator1, numerator2, sqrt_b) // sqrt_a


def amount1_delta(sqrt_a: int, sqrt_b: int, liquidity: int, round_up: bool) -> int:
    """SqrtPriceMath.getAmount1Delta (unsigned)."""
    if sqrt_a > sqrt_b:
        sqrt_a, sqrt_b = sqrt_b, sqrt_a
    if round_up:
        return mul_div_rounding_up(liquidity, sqrt_b - sqrt_a, Q96)
    return mul_div(liquidity, sqrt_b - sqrt_a, Q96)


# ------------------------------------------------------------------ SwapMath, LiquidityMath


def compute_swap_step_exact_in(sqrt_current: int, sqrt_target: int, liquidity: int,
                               amount_remaining: int, fee_pips: int) -> tuple[int, int, int, int]:
    """SwapMath.computeSwapStep for an exact input (``amountRemaining >= 0``):
    -> (sqrtRatioNextX96, amountIn, amountOut, feeAmount)."""
    zero_for_one = sqrt_current >= sqrt_target
    less_fee = mul_div(amount_remaining, FEE_DENOMINATOR - fee_pips, FEE_DENOMINATOR)
    if zero_for_one:
        amount_in = amount0_delta(sqrt_target, sqrt_current, liquidity, True)
    else:
        amount_in = amount1_delta(sqrt_current, sqrt_target, liquidity, True)
    if less_fee >= amount_in:
        sqrt_next = sqrt_target
    else:
        sqrt_next = next_sqrt_price_from_input(sqrt_current, liquidity, less_fee, zero_for_one)
    reached = sqrt_target == sqrt_next
    if zero_for_one:
        if not reached:
            amount_in = amount0_delta(sqrt_next, sqrt_current, liquidity, True)
        amount_out = amount1_delta(sqrt_next, sqrt_current, liquidity, False)
    else:
        if not reached:
            amount_in = amount1_delta(sqrt_current, sqrt_next, liquidity, True)
        amount_out = amount0_delta(sqrt_current, sqrt_next, liquidity, False)
    if not reached:
        fee = amount_remaining - amount_in  # the remainder goes to the fee
    else:
        fee = mul_div_rounding_up(amount_in, fee_pips, FEE_DENOMINATOR - fee_pips)
    return sqrt_next, amount_in, amount_out, fee


def add_delta(x: int, y: int) -> int:
    """LiquidityMath.addDelta: uint128 + int128, reverting on under/overflow ('LS' / 'LA')."""
    z = x + y
    if z < 0:
        raise V3MathError("LS")
    if z > UINT128_MAX:
        raise V3MathError("LA")
    return z
