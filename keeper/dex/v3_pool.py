"""A Uniswap V3 pool's state and an exact-input swap across its initialized ticks, pure.

``swap_exact_input(pool, zero_for_one, amount_in)`` is ``UniswapV3Pool.swap`` (v3-core
1.0.1) with a positive ``amountSpecified``: the same loop over ``computeSwapStep``, the
same step targets (``TickBitmap.nextInitializedTickWithinOneWord``: the next initialized
tick, or the edge of the current 256-tick-spacing word; the split at word edges changes
the rounding, so it is reproduced), the same tick crossings. The result equals the pool's
``Swap`` event, and what ``QuoterV2.quoteExactInputSingle`` and ``SwapRouter`` see, to the wei.

A pool is read at one block (``keeper.dex.quoter.read_pool``): ``slot0`` price and tick,
``liquidity``, fee, tick spacing, and every initialized tick with its ``liquidityNet``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace

from keeper.dex.v3_math import (
    MAX_SQRT_RATIO,
    MAX_TICK,
    MIN_SQRT_RATIO,
    MIN_TICK,
    V3MathError,
    add_delta,
    compute_swap_step_exact_in,
    get_sqrt_ratio_at_tick,
    get_tick_at_sqrt_ratio,
)


@dataclass(frozen=True, slots=True)
class PoolState:
    address: str
    token0: str
    token1: str
    fee: int  # pips: 500 = 0.05%
    tick_spacing: int
    sqrt_price_x96: int
    tick: int
    liquidity: int
    ticks: tuple[tuple[int, int], ...]  # (initialized tick, liquidityNet), ascending
    words: tuple[int, int] | None = None  # tickBitmap words read (inclusive); None: all of them

    def other(self, token: str) -> str:
        if token.lower() == self.token0.lower():
            return self.token1
        if token.lower() == self.token1.lower():
            return self.token0
        raise KeyError(f"{token} is not in pool {self.address}")


@dataclass(frozen=True, slots=True)
class SwapResult:
    amount_in: int
    amount_out: int
    fee_amount: int  # total LP fee paid, in the input token
    sqrt_price_x96: int  # after the swap
    tick: int
    liquidity: int
    pool: PoolState  # the pool after the swap


def _compress(tick: int, spacing: int) -> int:
    return tick // spacing  # Python floors: the contract's "round towards negative infinity"


def next_initialized_tick_within_one_word(pool: PoolState, tick: int, lte: bool) -> tuple[int, bool]:
    """TickBitmap.nextInitializedTickWithinOneWord over the pool's initialized ticks."""
    s = pool.tick_spacing
    compressed = _compress(tick, s)
    initialized = [t // s for t, _ in pool.ticks]  # initialized ticks are multiples of s
    word = (compressed if lte else compressed + 1) >> 8
    if pool.words is not None and not pool.words[0] <= word <= pool.words[1]:
        raise V3MathError(f"pool {pool.address}: tickBitmap word {word} was not read {pool.words}")
    if lte:
        word_low = compressed - (compressed % 256)  # bitPos = compressed mod 256 (uint8)
        i = bisect.bisect_right(initialized, compressed) - 1
        if i >= 0 and initialized[i] >= word_low:
            return initialized[i] * s, True
        return word_low * s, False
    start = compressed + 1
    word_high = start - (start % 256) + 255
    i = bisect.bisect_left(initialized, start)
    if i < len(initialized) and initialized[i] <= word_high:
        return initialized[i] * s, True
    return word_high * s, False


def swap_exact_input(pool: PoolState, zero_for_one: bool, amount_in: int,
                     sqrt_price_limit_x96: int = 0) -> SwapResult:
    """UniswapV3Pool.swap(recipient, zeroForOne, +amount_in, limit): what goes in (fee
    included) and out. ``sqrt_price_limit_x96 = 0``: no limit (MIN+1 / MAX-1, as
    SwapRouter and QuoterV2 do). Raises V3MathError where the pool reverts ('AS', 'SPL')."""
    if amount_in <= 0:
        raise V3MathError("AS")
    limit = sqrt_price_limit_x96 or (MIN_SQRT_RATIO + 1 if zero_for_one else MAX_SQRT_RATIO - 1)
    p = pool.sqrt_price_x96
    if zero_for_one and not MIN_SQRT_RATIO < limit < p or not zero_for_one and not p < limit < MAX_SQRT_RATIO:
        raise V3MathError("SPL")
    net = dict(pool.ticks)
    remaining, out, fees = amount_in, 0, 0
    price, tick, liquidity = p, pool.tick, pool.liquidity
    while remaining != 0 and price != limit:
        start = price
        tick_next, initialized = next_initialized_tick_within_one_word(pool, tick, zero_for_one)
        tick_next = max(MIN_TICK, min(MAX_TICK, tick_next))
        sqrt_next = get_sqrt_ratio_at_tick(tick_next)
        beyond = sqrt_next < limit if zero_for_one else sqrt_next > limit
        target = limit if beyond else sqrt_next
        price, step_in, step_out, fee = compute_swap_step_exact_in(price, target, liquidity,
                                                                   remaining, pool.fee)
        remaining -= step_in + fee
        out += step_out
        fees += fee
        if price == sqrt_next:
            if initialized:
                delta = net[tick_next]
                liquidity = add_delta(liquidity, -delta if zero_for_one else delta)
            tick = tick_next - 1 if zero_for_one else tick_next
        elif price != start:
            tick = get_tick_at_sqrt_ratio(price)
    after = replace(pool, sqrt_price_x96=price, tick=tick, liquidity=liquidity)
    return SwapResult(amount_in - remaining, out, fees, price, tick, liquidity, after)


def price_of(pool: PoolState) -> tuple[int, int]:
    """The pool's price as an exact fraction (token1 base units per token0 base unit)."""
    return pool.sqrt_price_x96**2, 1 << 192
