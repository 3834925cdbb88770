"""Guard: allow-list, fee ceilings, replacement bumps, daily cap; revert decoding."""

from __future__ import annotations

import pytest
from eth_abi import encode
from hypothesis import given
from hypothesis import strategies as st

from keeper.errors import ExecutionError
from keeper.executors import GWEI
from keeper.protocols.aave_v3.encode import allowed_calls
from keeper.executors.guard import (
    AllowList,
    Fees,
    Guard,
    decode_revert,
    selector_of,
)

POOL = "0x" + "11" * 20
TOKEN = "0x" + "22" * 20
OTHER = "0x" + "33" * 20


def guard(**kw) -> Guard:
    base = {"allow": AllowList(), "max_gas_price_wei": 200 * GWEI, "priority_fee_wei": GWEI,
            "max_spend_per_tx_wei": 10**17, "max_spend_per_day_wei": 10**18, "mode": "live"}
    return Guard(**{**base, **kw})


def test_selectors_known_values():
    assert selector_of("approve(address,uint256)").hex() == "095ea7b3"
    assert selector_of("0x095ea7b3") == bytes.fromhex("095ea7b3")
    with pytest.raises(ValueError):
        selector_of("approve")


def test_aave_allow_list():
    allow = AllowList.of(allowed_calls(POOL, [TOKEN]))
    sel = {s.hex() for _, s in allow.entries}
    # Pool.liquidationCall, supply, repay (Aave V3 IPool) and ERC20.approve
    assert sel == {"00a718a9", "617ba037", "573ade81", "095ea7b3"} and len(allow) == 4
    assert allow.allows(POOL.upper().replace("0X", "0x"), bytes.fromhex("00a718a9") + bytes(160))
    assert allow.allows(TOKEN, bytes.fromhex("095ea7b3"))
    assert not allow.allows(POOL, bytes.fromhex("095ea7b3"))  # approve on the pool: no
    assert not allow.allows(OTHER, bytes.fromhex("095ea7b3"))
    assert not allow.allows(TOKEN, b"")
    both = allow | AllowList.of([(OTHER, "transfer(address,uint256)")])
    assert both.allows(OTHER, bytes.fromhex("a9059cbb"))


def test_check_target_names_target_and_selector():
    g = guard(allow=AllowList.of(allowed_calls(POOL, [TOKEN])))
    g.check_target(TOKEN, bytes.fromhex("095ea7b3"))
    with pytest.raises(ExecutionError, match=r"0x3333333333333333333333333333333333333333 selector 0xa9059cbb"):
        g.check_target(OTHER, bytes.fromhex("a9059cbb") + bytes(64))
    with pytest.raises(ExecutionError, match="no calldata"):
        g.check_target(TOKEN, b"")


def test_initial_fees_two_base_plus_tip_under_every_ceiling():
    g = guard()
    assert g.initial_fees(10 * GWEI, 100_000, 0, 10**17) == Fees(21 * GWEI, GWEI)
    # the max gas price caps it
    assert g.initial_fees(150 * GWEI, 100_000, 0, 10**17).max_fee_per_gas == 200 * GWEI
    # the action's budget caps it: 100_000 gas * 15 gwei
    assert g.initial_fees(10 * GWEI, 100_000, 0, 15 * GWEI * 100_000).max_fee_per_gas == 15 * GWEI


@pytest.mark.parametrize(("base", "max_cost", "value", "bound"), [
    (200 * GWEI, 10**17, 0, "max_gas_price_gwei"),
    (10 * GWEI, 100_000 * 10 * GWEI, 0, "the action's max_cost_wei"),
    (10 * GWEI, 10**17, 10**17 - 100_000 * 5 * GWEI, "max_spend_per_tx_wei"),
])
def test_initial_fees_refused_names_the_bound(base, max_cost, value, bound):
    with pytest.raises(ExecutionError, match=f"gas price too high.*{bound}"):
        guard().initial_fees(base, 100_000, value, max_cost)


def test_value_over_the_per_tx_cap():
    with pytest.raises(ExecutionError, match="above max_spend_per_tx_wei"):
        guard().initial_fees(1, 21_000, 10**17 + 1, 10**18)


def test_bump_is_at_least_12_5_percent_and_two_base_plus_tip():
    g = guard()
    prev = Fees(8 * GWEI, 8 * GWEI // 10)
    new = g.bumped_fees(prev, 1 * GWEI, 100_000, 0, 10**17)
    assert new == Fees(9 * GWEI, 9 * GWEI // 10)
    # a base fee that rose: the cap follows 2 * base + tip
    new = g.bumped_fees(prev, 20 * GWEI, 100_000, 0, 10**17)
    assert new.max_fee_per_gas == 40 * GWEI + new.priority_fee_per_gas


def test_bump_none_when_the_ceiling_is_in_the_way():
    g = guard(max_gas_price_wei=100 * GWEI)
    assert g.bumped_fees(Fees(95 * GWEI, GWEI), GWEI, 100_000, 0, 10**17) is None
    # capped, but still >= +12.5%: allowed, at the cap
    assert g.bumped_fees(Fees(80 * GWEI, GWEI), 50 * GWEI, 100_000, 0, 10**17).max_fee_per_gas == 100 * GWEI


@given(
    base=st.integers(1, 500 * GWEI), gas=st.integers(21_000, 5_000_000),
    max_cost=st.integers(0, 10**18), tip=st.integers(0, 5 * GWEI), rounds=st.integers(0, 8),
)
def test_no_attempt_can_cost_more_than_the_budget(base, gas, max_cost, tip, rounds):
    g = guard(priority_fee_wei=tip)
    try:
        fees = g.initial_fees(base, gas, 0, max_cost)
    except ExecutionError:
        return
    for _ in range(rounds):
        assert fees.max_fee_per_gas * gas <= min(max_cost, 10**17)
        assert fees.max_fee_per_gas <= 200 * GWEI and fees.priority_fee_per_gas <= fees.max_fee_per_gas
        new = g.bumped_fees(fees, base, gas, 0, max_cost)
        if new is None:
            break
        assert new.max_fee_per_gas * 8 >= fees.max_fee_per_gas * 9
        assert new.priority_fee_per_gas * 8 >= fees.priority_fee_per_gas * 9
        fees = new


def test_daily_cap():
    g = guard(max_spend_per_day_wei=1000)
    g.check_daily_spend(400, 600)
    with pytest.raises(ExecutionError, match="daily spend cap"):
        g.check_daily_spend(401, 600)


def error_string(text: str) -> bytes:
    return bytes.fromhex("08c379a0") + encode(["string"], [text])


@pytest.mark.parametrize(("data", "words"), [
    (error_string("26"), "Aave error 26 INVALID_AMOUNT"),
    (error_string("45"), "Aave error 45 HEALTH_FACTOR_NOT_BELOW_THRESHOLD"),
    (error_string("91"), "Aave error 91 FLASHLOAN_DISABLED"),
    (error_string("48"), "48"),  # an unused code stays as it is
    (error_string("ERC20: transfer amount exceeds balance"), "ERC20: transfer amount exceeds balance"),
    (bytes.fromhex("4e487b71") + (0x11).to_bytes(32, "big"), "panic 0x11 (arithmetic overflow or underflow)"),
    (bytes.fromhex("deadbeef"), "custom error 0xdeadbeef"),
    (b"", "execution reverted"),
])
def test_decode_revert(data, words):
    assert decode_revert(data, "execution reverted") == words
