"""Uniswap V3 pure math (keeper.dex.v3_math / v3_pool / route): values from the contracts.

Sources of the expected values:
* TickMath / SqrtPriceMath / SwapMath: the v3-core 1.0.1 test suite's expectations
  (TickMath.spec.ts, SqrtPriceMath.spec.ts, SwapMath.spec.ts);
* ``CHAIN_POOL`` / ``CHAIN_QUOTES``: a devnet WETH/USDC 0.3% pool (full range plus four
  concentrated positions) read with ``keeper.dex.quoter.read_pool`` and quoted by the real
  QuoterV2 by eth_call (tests/integration/test_uniswap.py does the same live, at every run).
"""

from __future__ import annotations

from math import isqrt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.dex.route import Hop, Route, RouteError, quote_route
from keeper.dex.v3_math import (
    MAX_SQRT_RATIO,
    MAX_TICK,
    MIN_SQRT_RATIO,
    MIN_TICK,
    Q96,
    V3MathError,
    amount0_delta,
    amount1_delta,
    compute_swap_step_exact_in,
    get_sqrt_ratio_at_tick,
    get_tick_at_sqrt_ratio,
    next_sqrt_price_from_input,
)
from keeper.dex.v3_pool import PoolState, next_initialized_tick_within_one_word, swap_exact_input

E18 = 10**18


def encode_price_sqrt(reserve1: int, reserve0: int) -> int:  # the v3-core tests' helper
    return isqrt((reserve1 << 192) // reserve0)


def test_tick_math_bounds_and_known_values():
    assert get_sqrt_ratio_at_tick(MIN_TICK) == MIN_SQRT_RATIO
    assert get_sqrt_ratio_at_tick(MAX_TICK) == MAX_SQRT_RATIO
    assert get_sqrt_ratio_at_tick(0) == Q96
    assert get_sqrt_ratio_at_tick(MIN_TICK + 1) == 4295343490
    assert get_sqrt_ratio_at_tick(MAX_TICK - 1) == 1461373636630004318706518188784493106690254656249
    assert get_tick_at_sqrt_ratio(MIN_SQRT_RATIO) == MIN_TICK
    assert get_tick_at_sqrt_ratio(MAX_SQRT_RATIO - 1) == MAX_TICK - 1
    with pytest.raises(V3MathError):
        get_sqrt_ratio_at_tick(MAX_TICK + 1)
    with pytest.raises(V3MathError):
        get_tick_at_sqrt_ratio(MAX_SQRT_RATIO)


@given(st.integers(MIN_TICK, MAX_TICK - 1))
def test_tick_of_its_own_ratio_is_the_tick(tick):
    r = get_sqrt_ratio_at_tick(tick)
    assert get_tick_at_sqrt_ratio(r) == tick
    assert get_tick_at_sqrt_ratio(get_sqrt_ratio_at_tick(tick + 1) - 1) == tick


def test_sqrt_price_math_spec_values():
    one, p121 = encode_price_sqrt(1, 1), encode_price_sqrt(121, 100)
    assert amount0_delta(one, p121, E18, True) == 90909090909090910
    assert amount0_delta(one, p121, E18, False) == 90909090909090909
    assert amount1_delta(one, p121, E18, True) == 100000000000000000
    assert amount1_delta(one, p121, E18, False) == 99999999999999999
    assert next_sqrt_price_from_input(one, E18, E18 // 10, False) == 87150978765690771352898345369
    assert next_sqrt_price_from_input(one, E18, E18 // 10, True) == 72025602285694852357767227579


def test_swap_step_capped_at_the_target():
    price, target = encode_price_sqrt(1, 1), encode_price_sqrt(101, 100)
    nxt, amount_in, amount_out, fee = compute_swap_step_exact_in(price, target, 2 * E18, E18, 600)
    assert (amount_in, fee, amount_out, nxt) == (9975124224178055, 5988667735148, 9925619580021728, target)


def test_swap_step_fully_spent():
    price, target = encode_price_sqrt(1, 1), encode_price_sqrt(1000, 100)
    nxt, amount_in, amount_out, fee = compute_swap_step_exact_in(price, target, 2 * E18, E18, 600)
    assert (amount_in, fee, amount_out) == (999400000000000000, 600000000000000, 666399946655997866)
    assert nxt < target and amount_in + fee == E18


WETH, USDC = "0x5FbDB2315678afecb367f032d93F642f64180aa3", "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
CHAIN_POOL = PoolState(
    address="0x7fFc16e68415A72a27F45faE61a9569Cdc379F0A", token0=WETH, token1=USDC, fee=3000,
    tick_spacing=60, sqrt_price_x96=3543191142285914205922034, tick=-200312,
    liquidity=32656472478982785494,
    ticks=((-887220, 4472135954999579392), (-218340, 455127359381282260), (-202740, 2346543893263219393),
           (-200520, 25837792630719986709), (-200400, -455127359381282260), (-200280, 510735175643722368),
           (-200220, -25837792630719986709), (-198240, -2346543893263219393), (-185340, -510735175643722368),
           (887220, -4472135954999579392)),
    words=(-58, 57))  # fmt: skip
CHAIN_QUOTES = (  # (zeroForOne, amountIn, QuoterV2's amountOut)
    (True, 3000 * E18, 5957597557238),
    (False, 25_000_000 * 10**6, 11893198828597217635985),
    (True, 10**15, 1993999),
)


@pytest.mark.parametrize(("zero_for_one", "amount_in", "quoted"), CHAIN_QUOTES)
def test_swap_equals_quoter_v2_on_a_real_pool(zero_for_one, amount_in, quoted):
    r = swap_exact_input(CHAIN_POOL, zero_for_one, amount_in)
    assert r.amount_out == quoted
    assert r.amount_in == amount_in  # exact input, no price limit: all of it goes in
    route = Route.single(*((WETH, 3000, USDC) if zero_for_one else (USDC, 3000, WETH)))
    assert quote_route(route, {route.hops[0].key(): CHAIN_POOL}, amount_in) == quoted


def test_big_swap_crosses_initialized_ticks_and_updates_liquidity():
    r = swap_exact_input(CHAIN_POOL, False, 25_000_000 * 10**6)  # CHAIN_QUOTES[1]: up through two ticks
    assert r.tick > -200220 and r.liquidity != CHAIN_POOL.liquidity
    # the liquidity after is the sum of liquidityNet of the ticks at or below the new tick
    assert r.liquidity == sum(net for t, net in CHAIN_POOL.ticks if t <= r.tick)


def test_tick_bitmap_stays_within_one_word():
    p = CHAIN_POOL
    assert next_initialized_tick_within_one_word(p, -200312, True) == (-200400, True)
    assert next_initialized_tick_within_one_word(p, -200312, False) == (-200280, True)
    # nothing initialized in the rest of the word: its edge, not initialized
    edge, init = next_initialized_tick_within_one_word(p, -218341, True)
    assert not init and edge == ((-218341 // 60) - (-218341 // 60) % 256) * 60


def test_a_swap_beyond_the_words_read_is_refused():
    narrow = PoolState(**{**{f: getattr(CHAIN_POOL, f) for f in CHAIN_POOL.__slots__}, "words": (-14, -13)})
    with pytest.raises(V3MathError, match="not read"):
        swap_exact_input(narrow, True, 10**30)


@given(st.integers(1, 10**24))
def test_more_in_never_gives_less_out(amount):
    a = swap_exact_input(CHAIN_POOL, True, amount).amount_out
    b = swap_exact_input(CHAIN_POOL, True, amount + amount // 7 + 1).amount_out
    assert b >= a


def test_route_path_encoding_round_trips():
    r = Route.two(WETH, 500, USDC, 3000, "0x" + "11" * 20)
    path = r.encode_path()
    assert len(path) == 66 and path[20:23] == (500).to_bytes(3, "big")
    assert Route.decode_path(path) == Route((Hop(WETH, 500, USDC), Hop(USDC, 3000, "0x" + "11" * 20)))
    with pytest.raises(RouteError):
        Route.single(WETH, 1234, USDC)
    with pytest.raises(RouteError):
        Route((Hop(WETH, 500, USDC), Hop(WETH, 500, USDC)))
    with pytest.raises(RouteError, match="no pool"):
        quote_route(r, {}, 1)


def _solidity_next(bitmap: dict[int, int], tick: int, spacing: int, lte: bool) -> tuple[int, bool]:
    """TickBitmap.nextInitializedTickWithinOneWord, literally: words, masks, msb / lsb."""
    compressed = -(-tick // spacing) if tick < 0 else tick // spacing  # Solidity truncates toward zero...
    if tick < 0 and tick % spacing != 0:
        compressed -= 1  # ...then rounds toward negative infinity
    if lte:
        word, bit = compressed >> 8, compressed % 256
        masked = bitmap.get(word, 0) & ((1 << bit) - 1 + (1 << bit))
        if masked:
            return (compressed - (bit - (masked.bit_length() - 1))) * spacing, True
        return (compressed - bit) * spacing, False
    word, bit = (compressed + 1) >> 8, (compressed + 1) % 256
    masked = bitmap.get(word, 0) & ~((1 << bit) - 1) & ((1 << 256) - 1)
    if masked:
        return (compressed + 1 + ((masked & -masked).bit_length() - 1 - bit)) * spacing, True
    return (compressed + 1 + (255 - bit)) * spacing, False


@given(st.sets(st.integers(-3000, 3000), max_size=40), st.integers(-800_000, 800_000),
       st.sampled_from([1, 10, 60, 200]), st.booleans())
def test_next_initialized_tick_equals_the_bitmap_algorithm(compressed_ticks, tick, spacing, lte):
    tick = tick // 1000 * 7 if spacing == 1 else tick  # keep spacing 1 near its ticks
    bitmap: dict[int, int] = {}
    for c in compressed_ticks:
        bitmap[c >> 8] = bitmap.get(c >> 8, 0) | 1 << (c % 256)
    pool = PoolState("0x" + "00" * 20, WETH, USDC, 3000, spacing, Q96, tick, 1,
                     tuple((c * spacing, 1) for c in sorted(compressed_ticks)))
    assert next_initialized_tick_within_one_word(pool, tick, lte) == _solidity_next(bitmap, tick, spacing, lte)
