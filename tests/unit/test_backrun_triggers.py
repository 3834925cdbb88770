"""keeper.backrun.named_by_triggers: a pending update names its positions from the trigger
book (keeper.triggers, ``Ahead.candidates``) instead of every holder. Every position the new
price liquidates is named; nothing is named when no price moved; the book declines (None:
every holder is evaluated, as before) when several price keys moved or it keeps no prices."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.backrun import named_by_triggers
from keeper.health.status import classify
from keeper.protocols.compound_v3 import math as cm
from keeper.protocols.compound_v3.adapter import CompoundV3
from keeper.protocols.morpho_blue import math as mm
from keeper.protocols.morpho_blue.adapter import MorphoMarketAdapter
from keeper.triggers import Ahead
from tests.unit.test_comet_math import USDC, WBTC, WETH
from tests.unit.test_comet_math import market as comet_market
from tests.unit.test_morpho_math import mkt
from tests.unit.test_triggers import TH, _comet_liquidatable, _Pos, acct_id


def _watch(adapter, market, accounts, status_of):
    ahead = Ahead(adapter, TH)
    for a in accounts:
        ahead.keep(market, a, _Pos(a.account, status_of(market, a)))
    return SimpleNamespace(adapter=adapter, ahead=ahead)


def _comet_accounts(raw):
    out = []
    for i, (p, hf_bps, weth_pct) in enumerate(raw):  # near the thresholds, as test_triggers builds them
        debt_e8 = max(-p, 0) * 10**8 // 10**6
        weth = debt_e8 * hf_bps * weth_pct // 1_000_000 * 10**18 // (2_000 * 10**8) * 10**18 // (895 * 10**15)
        wbtc = debt_e8 * hf_bps * (100 - weth_pct) // 1_000_000 * 10**8 // (60_000 * 10**8) * 10**18 // (77 * 10**16)
        out.append(cm.CometAccount(acct_id(i), p, {k: v for k, v in ((WETH, weth), (WBTC, wbtc)) if v}))
    return out


def _comet_status(mk, a):
    return cm.position_from(mk, a, TH, with_drop=False).status


comet_raw = st.lists(st.tuples(st.integers(-(10**12), 10**10), st.integers(9_000, 17_000), st.integers(0, 100)),
                     min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(comet_raw, st.sampled_from([WETH, WBTC, USDC]), st.integers(-4_000, 4_000))
def test_one_comet_price_names_every_position_it_liquidates(raw, asset, bps):
    m = replace(comet_market(total_borrow=1_900_000 * 10**6), timestamp=1_000)
    accounts = _comet_accounts(raw)
    adapter = CompoundV3.__new__(CompoundV3)
    w = _watch(adapter, m, accounts, _comet_status)
    new = replace(m, prices_e8={**m.prices_e8, asset: m.prices_e8[asset] * (10_000 + bps) // 10_000})
    named = named_by_triggers(w, m, new)
    assert named is not None
    truly = {a.account for a in accounts if a.principal < 0 and _comet_liquidatable(new, a)}
    assert truly <= named
    if bps == 0:
        assert named == {a.account for a in accounts if a.principal < 0 and _comet_liquidatable(m, a)}


def test_two_comet_prices_moved_or_no_book_fall_back_to_the_holders():
    m = replace(comet_market(total_borrow=1_900_000 * 10**6), timestamp=1_000)
    accounts = _comet_accounts([(-10**11, 10_500, 50), (-10**11, 12_000, 0)])
    adapter = CompoundV3.__new__(CompoundV3)
    w = _watch(adapter, m, accounts, _comet_status)
    both = replace(m, prices_e8={**m.prices_e8, WETH: m.prices_e8[WETH] // 2, WBTC: m.prices_e8[WBTC] // 2})
    assert named_by_triggers(w, m, both) is None  # liquidated by the joint move: on neither list
    assert named_by_triggers(SimpleNamespace(adapter=adapter, ahead=None), m, both) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**22), st.integers(9_000, 17_000)), min_size=1, max_size=25),
       st.integers(-4_000, 4_000))
def test_the_morpho_oracle_price_names_every_position_it_liquidates(raw, bps):
    m = mkt(tsa=10**13, tba=9 * 10**12, price=mm.ORACLE_PRICE_SCALE // 10**12 * 2_000)
    accounts = []
    for i, (s, hf_bps) in enumerate(raw):
        s = min(s, m.total_borrow_shares)
        debt = mm.to_assets_up(s, m.total_borrow_assets, m.total_borrow_shares)
        coll = debt * hf_bps * mm.WAD // 10_000 * mm.ORACLE_PRICE_SCALE // m.params.lltv // m.price
        accounts.append(mm.MorphoPosition(acct_id(i), 0, s, coll))
    adapter = MorphoMarketAdapter.__new__(MorphoMarketAdapter)
    w = _watch(adapter, m, accounts, lambda mk, a: classify(mm.health(mk, a)[2], TH))
    new = replace(m, price=m.price * (10_000 + bps) // 10_000)
    named = named_by_triggers(w, m, new)
    assert named is not None
    assert {a.account for a in accounts if not mm.is_healthy(new, a)} <= named
