"""Fee bidding (keeper.executors.fees + Guard.initial_fees): the next block's base fee bound,
a tip that grows with the profit, maxFeePerGas that carries it, and the guard's caps over all."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.errors import ExecutionError
from keeper.executors import GWEI, TxRequest
from keeper.executors.fees import bid_tip, bid_wei, next_base_fee_bound
from tests.unit.test_tx_guard import guard

GAS = 400_000


def test_next_base_fee_bound_is_latest_plus_an_eighth_rounded_up_or_pending_if_higher():
    assert next_base_fee_bound(8 * GWEI) == 9 * GWEI
    assert next_base_fee_bound(7) == 8  # ceil(7 * 9 / 8) = ceil(7.875)
    assert next_base_fee_bound(0) == 0
    assert next_base_fee_bound(8 * GWEI, 5 * GWEI) == 9 * GWEI  # pending below the bound
    assert next_base_fee_bound(8 * GWEI, 300 * GWEI) == 300 * GWEI  # the node knows better
    with pytest.raises(ValueError):
        next_base_fee_bound(-1)


def test_bid_is_a_share_of_the_profit():
    assert bid_wei(10**18, 100) == 10**16  # 1%
    assert bid_wei(10**18, 0) == 0
    assert bid_wei(-5, 100) == 0  # a loss bids nothing
    assert bid_wei(9_999, 1) == 0  # rounds down, never up
    for bad in (-1, 10_000):
        with pytest.raises(ValueError, match="bid_share_bps"):
            bid_wei(10**18, bad)


def test_bid_tip_never_below_the_configured_tip():
    assert bid_tip(GWEI, 0, GAS) == GWEI
    assert bid_tip(GWEI, 10 * GWEI * GAS, GAS) == 10 * GWEI
    assert bid_tip(GWEI, 10 * GWEI * GAS + GAS - 1, GAS) == 10 * GWEI  # floor per gas
    with pytest.raises(ValueError):
        bid_tip(GWEI, 1, 0)


def test_initial_fees_carry_the_bid_in_max_fee():
    g = guard()  # 200 gwei max, 1 gwei tip, 0.1 ETH per tx
    base = next_base_fee_bound(10 * GWEI)
    plain = g.initial_fees(base, GAS, 0, 10**17)
    bid = g.initial_fees(base, GAS, 0, 10**17, bid_tip(GWEI, 5 * GWEI * GAS, GAS))
    assert plain.priority_fee_per_gas == GWEI and bid.priority_fee_per_gas == 5 * GWEI
    assert bid.max_fee_per_gas == 2 * base + 5 * GWEI > plain.max_fee_per_gas


def test_a_bid_is_cut_to_the_ceiling_never_above_it():
    g = guard()
    base = 10 * GWEI
    budget = 30 * GWEI * GAS  # the action may pay 30 gwei/gas at most
    fees = g.initial_fees(base, GAS, 0, budget, 100 * GWEI)
    assert fees.priority_fee_per_gas == 20 * GWEI  # the ceiling less the base fee
    assert fees.max_fee_per_gas == 30 * GWEI and fees.worst_cost(GAS) == budget
    capped = g.initial_fees(base, GAS, 0, 10**17, 10**6 * GWEI)  # max_gas_price_gwei = 200
    assert capped.max_fee_per_gas == 200 * GWEI and capped.priority_fee_per_gas == 190 * GWEI


def test_a_bid_does_not_rescue_a_refused_price():
    with pytest.raises(ExecutionError, match="gas price too high"):
        guard().initial_fees(250 * GWEI, GAS, 0, 10**17, 50 * GWEI)


@given(st.integers(0, 500 * GWEI), st.integers(1, 10**19), st.integers(1, 10**19),
       st.integers(0, 9_999), st.integers(21_000, 2_000_000))
def test_more_profit_never_bids_less_and_caps_hold(base, profit_a, profit_b, share, gas):
    g = guard()
    lo, hi = sorted((profit_a, profit_b))
    try:
        fa = g.initial_fees(base, gas, 0, lo, bid_tip(GWEI, bid_wei(lo, share), gas))
        fb = g.initial_fees(base, gas, 0, hi, bid_tip(GWEI, bid_wei(hi, share), gas))
    except ExecutionError:
        return  # refused for price: nothing to compare
    assert fb.max_fee_per_gas >= fa.max_fee_per_gas
    for f, budget in ((fa, lo), (fb, hi)):
        assert f.worst_cost(gas) <= min(budget, 10**17) and f.max_fee_per_gas <= 200 * GWEI
        assert f.max_fee_per_gas >= base + f.priority_fee_per_gas


def test_tx_request_bid_must_be_a_non_negative_int():
    ok = TxRequest(to="0x" + "11" * 20, data=b"", purpose="p", action_key="k", max_cost_wei=1, bid_wei=5)
    assert ok.bid_wei == 5
    with pytest.raises(ValueError, match="bid_wei"):
        TxRequest(to="0x" + "11" * 20, data=b"", purpose="p", action_key="k", max_cost_wei=1, bid_wei=-1)
