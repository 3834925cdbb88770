"""Aave V3 math primitives: hand-computed values and properties (Solidity outputs: test_health_solidity_vectors)."""

from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from keeper.protocols.aave_v3.math import (
    RESERVE_CONFIG_LAYOUT,
    bits_of,
    calculate_compounded_interest,
    calculate_linear_interest,
    decode_reserve_config,
    get_normalized_debt,
    get_normalized_income,
    is_borrowing,
    is_empty,
    is_using_as_collateral,
    is_using_as_collateral_or_borrowing,
    percent_div,
    percent_mul,
    ray_div,
    ray_mul,
    reserve_ids_in_use,
    wad_div,
    wad_mul,
)
from keeper.protocols.aave_v3.model import Reserve, ReserveConfig
from keeper.units import HALF_RAY, HALF_WAD, RAY, SECONDS_PER_YEAR, UINT256_MAX, WAD

AAVE = Path(__file__).resolve().parents[2] / "node_modules/@aave/core-v3/contracts/protocol/libraries"

uint = st.integers(min_value=0, max_value=UINT256_MAX)
small = st.integers(min_value=0, max_value=2**120)


# ------------------------------------------------------------ hand-computed


def test_wad_ray_hand_values():
    assert wad_mul(2 * WAD, 3 * WAD) == 6 * WAD
    assert ray_mul(2 * RAY, 3 * RAY) == 6 * RAY
    assert ray_mul(1, HALF_RAY) == 1  # exactly .5 rounds up
    assert ray_mul(1, HALF_RAY - 1) == 0
    assert wad_mul(1, HALF_WAD) == 1
    assert ray_div(3, 2 * RAY) == 2  # 1.5 -> 2
    assert ray_div(5, 2 * RAY) == 3  # 2.5 -> 3
    assert ray_div(1, 3 * RAY) == 0  # 0.33 -> 0
    assert ray_div(2, 3 * RAY) == 1  # 0.67 -> 1
    assert wad_div(1, 3) == 333_333_333_333_333_333
    assert wad_div(2, 3) == 666_666_666_666_666_667
    assert wad_div(3 * WAD, 2 * WAD) == 1_500_000_000_000_000_000


def test_percent_hand_values():
    assert percent_mul(10_001, 5_000) == 5_001  # 5000.5 -> 5001
    assert percent_mul(9_999, 5_000) == 5_000  # 4999.5 -> 5000
    assert percent_mul(9_998, 5_000) == 4_999
    assert percent_mul(20_000 * 10**8, 8_250) == 16_500 * 10**8
    assert percent_mul(UINT256_MAX, 0) == 0  # percentage 0 never reverts
    assert percent_div(1, 20_000) == 1  # 0.5 -> 1
    assert percent_div(16_500, 8_250) == 20_000


def test_division_by_zero_reverts():
    for fn in (wad_div, ray_div, percent_div):
        with pytest.raises(ZeroDivisionError):
            fn(1, 0)


def test_negative_is_not_a_uint256():
    with pytest.raises(ValueError):
        ray_mul(-1, RAY)
    with pytest.raises(ValueError):
        wad_div(UINT256_MAX + 1, 1)


def test_linear_interest_hand_value():
    # 10% a year for half a year: 1 + 0.1 * 0.5
    half_year = SECONDS_PER_YEAR // 2
    assert calculate_linear_interest(RAY // 10, 0, half_year) == RAY + RAY // 20
    assert calculate_linear_interest(RAY // 10, 5, 5) == RAY
    with pytest.raises(OverflowError):  # block.timestamp - lastUpdateTimestamp underflows
        calculate_linear_interest(RAY // 10, 6, 5)


def test_compounded_interest_hand_value():
    rate = RAY // 10
    # exp == 2: the third term is zero (expMinusTwo = 0), second = 2 * 1 * base2 / 2
    base2 = ray_mul(rate, rate) // SECONDS_PER_YEAR**2
    assert calculate_compounded_interest(rate, 100, 102) == RAY + rate * 2 // SECONDS_PER_YEAR + base2
    # exp == 1: only the linear term
    assert calculate_compounded_interest(rate, 100, 101) == RAY + rate // SECONDS_PER_YEAR
    assert calculate_compounded_interest(rate, 100, 100) == RAY


def _reserve(**kw) -> Reserve:
    cfg = ReserveConfig(8000, 8250, 10500, 18, True, False, True, False, False, False, False, True,
                        1000, 0, 0, 0, 1000, 0)  # fmt: skip
    base = dict(id=0, asset="0x" + "11" * 20, symbol="X", config=cfg, a_token="", stable_debt_token="",
                variable_debt_token="", liquidity_index_ray=RAY, variable_borrow_index_ray=RAY,
                current_liquidity_rate_ray=0, current_variable_borrow_rate_ray=0,
                last_update_timestamp=0, price_base=10**8, price_source="")  # fmt: skip
    base.update(kw)
    return Reserve(**base)


def test_normalized_income_and_debt():
    r = _reserve(
        liquidity_index_ray=105 * RAY // 100,
        variable_borrow_index_ray=2 * RAY,
        current_liquidity_rate_ray=RAY // 10,
        current_variable_borrow_rate_ray=RAY // 10,
        last_update_timestamp=1_000,
    )
    # updated in this block: the stored index, whatever the rate
    assert get_normalized_income(r, 1_000) == 105 * RAY // 100
    assert get_normalized_debt(r, 1_000) == 2 * RAY
    # 1.05 * (1 + 0.1 * 0.5) = 1.1025 exactly
    assert get_normalized_income(r, 1_000 + SECONDS_PER_YEAR // 2) == 11_025 * RAY // 10_000
    growth = calculate_compounded_interest(RAY // 10, 1_000, 1_000 + 86_400)
    assert get_normalized_debt(r, 1_000 + 86_400) == ray_mul(growth, 2 * RAY)


# ---------------------------------------------------------------- overflow


@given(uint, uint)
def test_ray_mul_reverts_exactly_when_the_product_overflows(a, b):
    if a * b + HALF_RAY > UINT256_MAX:
        with pytest.raises(OverflowError):
            ray_mul(a, b)
    else:
        assert ray_mul(a, b) == (a * b + HALF_RAY) // RAY


@given(uint, uint)
def test_wad_mul_reverts_exactly_when_the_product_overflows(a, b):
    if a * b + HALF_WAD > UINT256_MAX:
        with pytest.raises(OverflowError):
            wad_mul(a, b)
    else:
        assert wad_mul(a, b) == (a * b + HALF_WAD) // WAD


@given(uint, uint.filter(lambda b: b > 0))
def test_ray_and_wad_div_revert_exactly_when_overflowing(a, b):
    for fn, unit in ((ray_div, RAY), (wad_div, WAD)):
        if a * unit + b // 2 > UINT256_MAX:
            with pytest.raises(OverflowError):
                fn(a, b)
        else:
            assert fn(a, b) == (a * unit + b // 2) // b


def test_guards_near_2_256():
    a = (UINT256_MAX - HALF_RAY) // 7
    assert ray_mul(a, 7) == (a * 7 + HALF_RAY) // RAY
    with pytest.raises(OverflowError):
        ray_mul(a + 1, 7)
    with pytest.raises(OverflowError):
        ray_mul(2**128, 2**128)
    with pytest.raises(OverflowError):
        percent_mul(UINT256_MAX, 1)
    assert percent_mul(0, UINT256_MAX) == 0
    top = (UINT256_MAX - 1) // RAY
    assert ray_div(top, 3) == (top * RAY + 1) // 3
    with pytest.raises(OverflowError):
        ray_div(top + 1, 3)


# -------------------------------------------------------------- rounding


@given(small, small)
def test_ray_mul_rounds_half_up(a, b):
    r = ray_mul(a, b)
    assert -HALF_RAY <= a * b - r * RAY < HALF_RAY  # error in [-0.5, 0.5): .5 goes up


@given(small, st.integers(min_value=1, max_value=2**128))
def test_ray_div_rounds_half_up(a, b):
    r = ray_div(a, b)
    # a / b - r in [-1/2, 1/2), measured in units of 1/(2b)
    assert -b <= 2 * (a * RAY - r * b) < b


@given(st.integers(min_value=0, max_value=2**200), st.integers(min_value=0, max_value=65_535))
def test_percent_mul_matches_reference(value, pct):
    from fractions import Fraction

    exact = Fraction(value * pct, 10_000)
    assert percent_mul(value, pct) == int(exact + Fraction(1, 2))  # floor(x + 1/2)


@given(st.integers(min_value=0, max_value=2**200), st.integers(min_value=1, max_value=65_535))
def test_percent_div_matches_reference(value, pct):
    from fractions import Fraction

    r = percent_div(value, pct)
    assert r == (value * 10_000 + pct // 2) // pct
    assert abs(Fraction(value * 10_000, pct) - r) <= Fraction(1, 2)


# -------------------------------------------------------------- interest

rates = st.integers(min_value=0, max_value=10 * RAY)  # up to 1000% a year
spans = st.integers(min_value=0, max_value=10 * SECONDS_PER_YEAR)


@given(rates, spans)
def test_compounded_is_at_least_linear_and_at_least_one(rate, dt):
    t0 = 1_600_000_000
    linear = calculate_linear_interest(rate, t0, t0 + dt)
    compounded = calculate_compounded_interest(rate, t0, t0 + dt)
    assert compounded >= linear >= RAY
    if dt <= 1 or rate == 0:
        assert compounded == linear


@given(rates, spans, spans)
def test_interest_grows_with_time(rate, dt1, dt2):
    lo, hi = sorted((dt1, dt2))
    for fn in (calculate_linear_interest, calculate_compounded_interest):
        assert fn(rate, 0, lo) <= fn(rate, 0, hi)


# ----------------------------------------------------- ReserveConfiguration


def encode(c: ReserveConfig, unbacked_mint_cap: int = 0) -> int:
    """Written from the Solidity setters (shifts typed in from ReserveConfiguration.sol)."""
    flags = (c.active, c.frozen, c.borrowing_enabled, c.stable_borrowing_enabled, c.paused,
             c.borrowable_in_isolation, c.siloed_borrowing, c.flashloan_enabled)  # fmt: skip
    data = c.ltv_bps | c.liquidation_threshold_bps << 16 | c.liquidation_bonus_bps << 32
    data |= c.decimals << 48
    for bit, flag in enumerate(flags):
        data |= int(flag) << (56 + bit)
    data |= c.reserve_factor_bps << 64 | c.borrow_cap << 80 | c.supply_cap << 116
    data |= c.liquidation_protocol_fee_bps << 152 | c.emode_category << 168
    data |= unbacked_mint_cap << 176 | c.debt_ceiling << 212
    return data


def _bits(n):
    return st.integers(min_value=0, max_value=2**n - 1)


configs = st.builds(
    ReserveConfig,
    _bits(16), _bits(16), _bits(16), _bits(8),
    st.booleans(), st.booleans(), st.booleans(), st.booleans(),
    st.booleans(), st.booleans(), st.booleans(), st.booleans(),
    _bits(16), _bits(36), _bits(36), _bits(40), _bits(16), _bits(8),
)  # fmt: skip


@given(configs, _bits(36))
def test_decode_round_trips(cfg, unbacked):
    data = encode(cfg, unbacked)
    assert decode_reserve_config(data) == cfg
    assert bits_of(data, "unbacked_mint_cap") == unbacked


def test_layout_matches_the_solidity_source():
    sol = AAVE / "configuration/ReserveConfiguration.sol"
    if not sol.exists():
        pytest.skip("node_modules not installed (run make)")
    import re

    text = sol.read_text()
    masks = {m[0]: int(m[1], 16) for m in re.findall(r"constant (\w+)_MASK =\s+0x([0-9A-F]+)", text)}
    names = {"LTV": "ltv_bps", "LIQUIDATION_THRESHOLD": "liquidation_threshold_bps",
             "LIQUIDATION_BONUS": "liquidation_bonus_bps", "DECIMALS": "decimals", "ACTIVE": "active",
             "FROZEN": "frozen", "BORROWING": "borrowing_enabled", "STABLE_BORROWING": "stable_borrowing_enabled",
             "PAUSED": "paused", "BORROWABLE_IN_ISOLATION": "borrowable_in_isolation",
             "SILOED_BORROWING": "siloed_borrowing", "FLASHLOAN_ENABLED": "flashloan_enabled",
             "RESERVE_FACTOR": "reserve_factor_bps", "BORROW_CAP": "borrow_cap", "SUPPLY_CAP": "supply_cap",
             "LIQUIDATION_PROTOCOL_FEE": "liquidation_protocol_fee_bps", "EMODE_CATEGORY": "emode_category",
             "UNBACKED_MINT_CAP": "unbacked_mint_cap", "DEBT_CEILING": "debt_ceiling"}  # fmt: skip
    assert set(masks) == set(names)
    for sol_name, field in names.items():
        start, width = RESERVE_CONFIG_LAYOUT[field]
        assert masks[sol_name] == UINT256_MAX ^ (((1 << width) - 1) << start), sol_name


def test_decode_rejects_non_uint256():
    with pytest.raises(ValueError):
        decode_reserve_config(-1)
    with pytest.raises(ValueError):
        decode_reserve_config(2**256)


# ------------------------------------------------------- UserConfiguration


def test_user_configuration_bits():
    cfg = (1 << (2 * 0 + 1)) | (1 << (2 * 3)) | (3 << (2 * 127))  # collateral 0, borrow 3, both 127
    assert is_using_as_collateral(cfg, 0) and not is_borrowing(cfg, 0)
    assert is_borrowing(cfg, 3) and not is_using_as_collateral(cfg, 3)
    assert is_borrowing(cfg, 127) and is_using_as_collateral(cfg, 127)
    assert not is_using_as_collateral_or_borrowing(cfg, 1)
    assert all(is_using_as_collateral_or_borrowing(cfg, i) for i in (0, 3, 127))
    assert reserve_ids_in_use(cfg) == [0, 3, 127]
    assert is_empty(0) and not is_empty(cfg)
    with pytest.raises(ValueError):  # Errors.INVALID_RESERVE_INDEX
        is_borrowing(cfg, 128)


@given(st.integers(min_value=0, max_value=UINT256_MAX))
def test_ids_in_use_agree_with_the_bit_helpers(cfg):
    assert reserve_ids_in_use(cfg) == [i for i in range(128) if is_using_as_collateral_or_borrowing(cfg, i)]
