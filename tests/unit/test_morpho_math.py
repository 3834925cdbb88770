"""keeper.protocols.morpho_blue.math: Morpho Blue's MathLib, SharesMathLib, _accrueInterest, _isHealthy and
liquidate, on hand-computed values and Hypothesis properties. The same math is checked against
the real contract, to the wei, in tests/integration/test_morpho.py."""

from dataclasses import replace

import pytest
from hypothesis import assume, given, settings, strategies as st

from keeper.protocols.morpho_blue.math import (
    MAX_LIQUIDATION_INCENTIVE_FACTOR, ORACLE_PRICE_SCALE, UINT128_MAX, WAD, LiquidationRevert,
    MarketParams, MorphoMarket, MorphoPosition, accrue, accrue_detail, drop_to_liquidation_bps,
    health, irm_mock_borrow_rate, is_healthy, liquidate_quote, liquidation_incentive_factor,
    liquidation_price, max_liquidation, position_from, shock, to_assets_down, to_assets_up,
    to_shares_down, to_shares_up, w_div_up, w_taylor_compounded,
)  # fmt: skip
from keeper.health.status import Thresholds
from keeper.model import Status

E6, E18 = 10**6, 10**18
USDC, WETH = "0x" + "11" * 20, "0x" + "22" * 20
PARAMS = MarketParams(USDC, WETH, "0x" + "33" * 20, "0x" + "44" * 20, 86 * 10**16)
ETH_PRICE = 2_000 * 10**24  # $2000: 1e36 * 10^(6 - 18) * 2000


def mkt(tsa=10_000_000 * E6, tba=5_000_000 * E6, price=ETH_PRICE, fee=0, last=0, ts=0, **kw):
    """Shares at the virtual-share rate (1e6 per asset) unless given."""
    return MorphoMarket(
        id="0x" + "ab" * 32, params=kw.pop("params", PARAMS),
        total_supply_assets=tsa, total_supply_shares=kw.pop("tss", tsa * E6),
        total_borrow_assets=tba, total_borrow_shares=kw.pop("tbs", tba * E6),
        last_update=last, fee=fee, price=price, block=1, timestamp=ts, **kw)


def pos(collateral=E18, debt=1_000 * E6, supply=0):
    return MorphoPosition("0x" + "55" * 20, supply, debt * E6, collateral)


# ------------------------------------------------------------------ by hand


def test_taylor_and_shares_by_hand():
    # x = 1% per second for 10 s: 0.1 + 0.1^2/2 + 0.1^3/6 (each term floored)
    assert w_taylor_compounded(10**16, 10) == 10**17 + 5 * 10**15 + 166_666_666_666_666
    # empty market: 1 asset = 1e6 shares (VIRTUAL_SHARES / VIRTUAL_ASSETS)
    assert to_shares_down(100, 0, 0) == 100 * E6
    assert to_assets_up(1, 1_000, 10**9) == 1  # ceil(1 * 1001 / (1e9 + 1e6))
    assert to_assets_down(1, 1_000, 10**9) == 0
    assert to_shares_up(1, 1_000, 10**9) == -(-(10**9 + E6) // 1001)
    assert w_div_up(1, 3) == 333_333_333_333_333_334


def test_liquidation_incentive_factor_by_hand():
    # 1 / (1 - 0.3 * (1 - lltv)), floored, at most 1.15
    assert liquidation_incentive_factor(86 * 10**16) == 10**36 // (958 * 10**15)  # 1.0438...
    assert liquidation_incentive_factor(77 * 10**16) == 10**36 // (931 * 10**15)  # 1.0741...
    assert liquidation_incentive_factor(0) == MAX_LIQUIDATION_INCENTIVE_FACTOR  # 1/0.7 > 1.15
    assert liquidation_incentive_factor(WAD - 1) == WAD


def test_irm_mock_rate_and_accrual_by_hand():
    m = mkt(tsa=2 * E6, tba=E6, fee=10**17)
    # utilization 50% -> 50% APR per second, floored
    assert irm_mock_borrow_rate(m) == 5 * 10**17 // (365 * 86_400) == 15_854_895_991
    assert irm_mock_borrow_rate(mkt(tsa=0, tba=0)) == 0
    a = accrue_detail(m, 10, borrow_rate=10**16)  # 1%/s for 10 s: taylor = 0.105166...
    assert a.interest == E6 * 105_166_666_666_666_666 // E18 == 105_166
    assert a.market.total_borrow_assets == E6 + 105_166
    assert a.market.total_supply_assets == 2 * E6 + 105_166
    fee = 105_166 // 10  # wMulDown(interest, 10%)
    # fee shares priced on the supply without the fee: toSharesDown(fee, tsa - fee, tss)
    assert a.fee_shares == fee * (2 * E6 * E6 + E6) // (2 * E6 + 105_166 - fee + 1)
    assert a.market.total_supply_shares == 2 * E6 * E6 + a.fee_shares
    assert (a.market.last_update, a.market.timestamp) == (10, 10)
    assert a.market.total_borrow_shares == m.total_borrow_shares
    assert accrue(m, 0) == m  # no time, no change
    with pytest.raises(ValueError):
        accrue(replace(m, last_update=20), 10)
    no_irm = replace(m, params=replace(PARAMS, irm="0x" + "00" * 20))
    assert accrue(no_irm, 99).total_borrow_assets == E6  # no IRM: only lastUpdate moves
    with pytest.raises(OverflowError):
        accrue(mkt(tsa=UINT128_MAX - 1, tba=UINT128_MAX - 1, tss=1, tbs=1), 10, borrow_rate=WAD)


def test_health_by_hand():
    m = mkt()  # 1 share = 1e-6 asset, exactly
    p = pos(collateral=E18, debt=1_000 * E6)  # 1 WETH at $2000, 1000 USDC
    max_borrow, borrowed, hf = health(m, p)
    assert max_borrow == 1_720 * E6  # 2000 * 0.86
    assert borrowed == 1_000 * E6
    assert hf == 172 * 10**16
    assert is_healthy(m, p)
    assert health(m, pos(debt=0)) == (1_720 * E6, 0, None)
    assert is_healthy(m, pos(collateral=0, debt=0))
    at_edge = pos(collateral=E18, debt=1_720 * E6)
    assert health(m, at_edge)[2] == WAD and is_healthy(m, at_edge)
    assert not is_healthy(m, replace(at_edge, borrow_shares=at_edge.borrow_shares + 1))


def test_liquidation_price_and_drop_by_hand():
    m, p = mkt(), pos(collateral=E18, debt=1_720 * E6)
    # healthy exactly while floor(price / 1e36 * 1e18) * 0.86 >= 1720e6, i.e. price >= 2000e24
    assert liquidation_price(m, p) == ETH_PRICE - 1
    assert drop_to_liquidation_bps(m, p) == 1  # any drop liquidates
    p2 = pos(collateral=E18, debt=860 * E6)  # HF 2: liquidatable below $1000
    assert liquidation_price(m, p2) == 1_000 * 10**24 - 1
    assert drop_to_liquidation_bps(m, p2) == 5_001  # -50.00% lands exactly on $1000: healthy
    assert drop_to_liquidation_bps(m, pos(debt=0)) is None
    assert drop_to_liquidation_bps(shock(m, -6_000), p2) == 0
    assert shock(m, -2_000).price == 1_600 * 10**24
    with pytest.raises(ValueError):
        shock(m, -10_001)


def test_liquidate_both_directions_by_hand():
    m = mkt(price=1_500 * 10**24)  # ETH at $1500: 1 WETH backs 1290 < 1500 -> liquidatable
    p = pos(collateral=E18, debt=1_500 * E6)
    lif = liquidation_incentive_factor(PARAMS.lltv)
    q = liquidate_quote(m, p, seized_assets=E18 // 2)  # 0.5 WETH = 750 USDC
    assert q.repaid_assets == -(-750 * E6 * E18 // lif)  # wDivUp by the incentive
    assert q.repaid_shares == q.repaid_assets * E6  # exact share rate in this market
    assert (q.bad_debt_assets, q.position.collateral) == (0, E18 // 2)
    assert q.market.total_borrow_assets == m.total_borrow_assets - q.repaid_assets
    q2 = liquidate_quote(m, p, repaid_shares=q.repaid_shares)
    # the same shares seize a little more: they were rounded up from 0.5 WETH
    assert q2.repaid_assets == q.repaid_assets
    assert 0 <= q2.seized_assets - E18 // 2 < 2 * E18 // (1_500 * E6)  # < 2 USDC units of WETH
    with pytest.raises(LiquidationRevert, match="healthy"):
        liquidate_quote(mkt(), p, seized_assets=1)
    with pytest.raises(LiquidationRevert, match="inconsistent"):
        liquidate_quote(m, p, seized_assets=1, repaid_shares=1)
    with pytest.raises(LiquidationRevert):
        liquidate_quote(m, p, seized_assets=E18 + 1)


def test_bad_debt_is_realized_when_collateral_runs_out():
    m = mkt(price=1_000 * 10**24)  # 1 WETH = $1000 < $1500 owed
    p = pos(collateral=E18, debt=1_500 * E6)
    q = max_liquidation(m, p)
    assert q.seized_assets == E18 and q.position == replace(p, borrow_shares=0, collateral=0)
    assert q.repaid_assets + q.bad_debt_assets >= 1_500 * E6 - 1
    assert q.bad_debt_shares == p.borrow_shares - q.repaid_shares
    assert q.market.total_supply_assets == m.total_supply_assets - q.bad_debt_assets
    assert q.market.total_borrow_shares == m.total_borrow_shares - p.borrow_shares
    small = max_liquidation(shock(m, 4_000), pos(collateral=E18, debt=1_300 * E6))
    assert small.repaid_shares == 1_300 * E6 * E6 and small.bad_debt_assets == 0


def test_position_from():
    m, p = mkt(price=1_500 * 10**24), pos(collateral=E18, debt=1_000 * E6)
    out = position_from(m, p, Thresholds(), collateral_symbol="WETH")
    assert (out.protocol, out.market, out.account) == ("morpho_blue", m.id, p.account)
    assert (out.collateral_base, out.debt_base) == (1_500 * E6, 1_000 * E6)  # loan-token units
    assert out.health_factor_wad == 129 * 10**16 and out.status is Status.WATCH
    assert out.liquidation_threshold_bps == 8_600 and out.main_collateral == "WETH"
    assert out.drop_to_liquidation_bps == drop_to_liquidation_bps(m, p) and out.reliable
    assert out.assets == {USDC, WETH}
    assert not position_from(replace(m, unreliable=True), p).reliable
    assert position_from(m, pos(debt=0)).status is Status.SAFE


# ------------------------------------------------------------------ properties

amounts = st.integers(0, 10**30)
totals = st.tuples(st.integers(0, 10**30), st.integers(0, 10**36))


@given(amounts, totals)
def test_shares_round_in_the_protocols_favour(a, t):
    ta, ts = t
    down, up = to_shares_down(a, ta, ts), to_shares_up(a, ta, ts)
    assert down <= up <= down + 1
    # a supplier gets back at most what it put in; a borrower owes at least what it got
    assert to_assets_down(down, ta + a, ts + down) <= a
    assert to_assets_up(up, ta + a, ts + up) >= a
    assert to_assets_down(down, ta, ts) <= a <= to_assets_up(up, ta, ts)


markets = st.builds(
    lambda tsa, util, shares_per_asset, price, fee, lltv: mkt(
        tsa=tsa, tba=tsa * util // 100, tss=tsa * shares_per_asset,
        tbs=tsa * util // 100 * shares_per_asset, price=price, fee=fee,
        params=replace(PARAMS, lltv=lltv)),
    st.integers(1, 10**15), st.integers(0, 100), st.integers(1, 10**6),
    st.integers(1, 10**40), st.integers(0, 25 * 10**16), st.integers(1, WAD - 1))


@st.composite
def market_positions(draw):
    """A market and a position in it (its borrow shares within the market's)."""
    m = draw(markets)
    shares = draw(st.integers(0, m.total_borrow_shares))
    return m, MorphoPosition("0x" + "55" * 20, 0, shares, draw(st.integers(0, 10**30)))


positions = st.builds(lambda c, s: MorphoPosition("0x" + "55" * 20, 0, s, c),
                      st.integers(0, 10**30), st.integers(0, 10**24))


@given(markets, positions, st.integers(0, 10**40), st.integers(0, 10**40))
def test_hf_falls_as_price_falls(m, p, p1, p2):
    lo, hi = sorted((p1, p2))
    h_lo, h_hi = health(replace(m, price=lo), p), health(replace(m, price=hi), p)
    assert h_lo[0] <= h_hi[0]
    if h_lo[2] is not None:
        assert h_lo[2] <= h_hi[2]
    assert not is_healthy(replace(m, price=lo), p) or is_healthy(replace(m, price=hi), p)


@given(markets, st.integers(0, 10**8), st.integers(0, 10**8))
def test_accrue_is_monotone_in_time(m, t1, t2):
    t1, t2 = sorted((t1, t2))
    a1, a2 = accrue(m, t1), accrue(m, t2)
    assert m.total_borrow_assets <= a1.total_borrow_assets <= a2.total_borrow_assets
    assert m.total_supply_assets <= a1.total_supply_assets <= a2.total_supply_assets
    # fee shares are never negative, but NOT monotone in time: a fee of a few wei converts
    # into fewer shares once more interest has raised totalSupplyAssets (toSharesDown), so
    # a later accrual can mint one share less (found by Hypothesis; Morpho does the same)
    assert m.total_supply_shares <= a1.total_supply_shares
    assert m.total_supply_shares <= a2.total_supply_shares
    # the fee recipient's new shares are worth at most the fee
    fee_shares = a2.total_supply_shares - m.total_supply_shares
    interest = a2.total_borrow_assets - m.total_borrow_assets
    assert to_assets_down(fee_shares, a2.total_supply_assets, a2.total_supply_shares) \
        <= interest * m.fee // WAD


@settings(max_examples=300)
@given(markets, positions)
def test_liquidation_price_is_the_exact_edge(m, p):
    assume(p.borrow_shares > 0 and p.collateral > 0)
    lp = liquidation_price(m, p)
    assert not is_healthy(m, p, price=lp)
    assert is_healthy(m, p, price=lp + 1)
    bps = drop_to_liquidation_bps(m, p)
    assert not is_healthy(shock(m, -bps), p)
    if bps > 0:
        assert is_healthy(shock(m, -(bps - 1)), p)


@settings(max_examples=300)
@given(market_positions(), st.integers(1, 10**30), st.booleans())
def test_liquidator_never_gets_more_than_the_incentive(mp, amount, by_seized):
    m, p = mp
    assume(not is_healthy(m, p))
    try:
        q = liquidate_quote(m, p, seized_assets=amount) if by_seized else \
            liquidate_quote(m, p, repaid_shares=amount)
    except LiquidationRevert:
        return
    lif = liquidation_incentive_factor(m.params.lltv)
    # value seized (in loan units, 1e36-scaled) <= repaid * incentive
    assert q.seized_assets * m.price * WAD <= q.repaid_assets * lif * ORACLE_PRICE_SCALE
    assert q.position.borrow_shares + q.repaid_shares + q.bad_debt_shares == p.borrow_shares


@settings(max_examples=200)
@given(market_positions())
def test_max_liquidation_never_reverts_and_clears_the_position(mp):
    m, p = mp
    assume(p.borrow_shares > 0 and p.collateral > 0 and not is_healthy(m, p))
    try:
        q = max_liquidation(m, p)
    except LiquidationRevert:  # only when not even 1 unit of collateral can be seized
        assert liquidate_quote(m, p, repaid_shares=p.borrow_shares).seized_assets > p.collateral
        return
    if q.position.borrow_shares and q.position.collateral:  # stopped short: one more reverts
        with pytest.raises(LiquidationRevert):
            liquidate_quote(m, p, seized_assets=q.seized_assets + 1)
