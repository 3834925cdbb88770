"""keeper.bands and the three protocols' price_bands: every price inside a position's band
keeps its status (exact math); Morpho's and Comet's edges are the exact edges; Aave's closed-
form-and-verified bands are near them; and markets stepped through price moves (with interest
in the same block on Morpho and Comet) recomputing only what ``Ahead.price_moved`` names end
with the statuses of a full recompute, every step."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.bands import PriceBands, triples
from keeper.health.status import Thresholds, classify
from keeper.protocols.aave_v3 import price_bands as ab
from keeper.protocols.aave_v3.adapter import AaveV3
from keeper.protocols.aave_v3.health import calculate_user_account_data
from keeper.protocols.compound_v3 import math as cm
from keeper.protocols.compound_v3 import triggers as ct
from keeper.protocols.morpho_blue import math as mm
from keeper.protocols.morpho_blue import triggers as mt
from keeper.triggers import Ahead
from tests.unit.test_comet_math import USDC, WBTC, WETH
from tests.unit.test_health_builders import CRV, DAI, ETH_EMODE, WBTC as A_WBTC, WSTETH, address, account, market
from tests.unit.test_health_builders import USDC as A_USDC
from tests.unit.test_health_builders import WETH as A_WETH
from tests.unit.test_triggers import _comet, _morpho, _Pos, acct_id, ahead_over, comet_cases, morpho_cases

E18 = 10**18
TH = Thresholds(E18, 11 * E18 // 10, 15 * E18 // 10)


def status_band(status):
    t = TH
    return {"liquidatable": (None, t.liquidation_wad), "at_risk": (t.liquidation_wad, t.at_risk_wad),
            "watch": (t.at_risk_wad, t.watch_wad), "safe": (t.watch_wad, None)}[status.value]


# ------------------------------------------------------------------ the book, by hand


def test_bands_name_positions_outside_and_follow_replacements():
    b = PriceBands()
    b.set("a", [("weth", 100, 200)])
    b.set("b", [("weth", 150, None), ("usdc", None, 9)])
    b.set("c", [])
    assert b.outside("weth", 160) == set()
    assert b.outside("weth", 120) == {"b"}
    assert b.outside("weth", 99) == {"a", "b"}
    assert b.outside("weth", 201) == {"a"}
    assert b.outside("usdc", 10) == {"b"}
    b.set("b", [("weth", 10, 20)])  # replaced in place: the book is built
    assert b.outside("weth", 160) == {"b"}
    assert b.outside("usdc", 10) == set()
    b.set("c", None)  # unknown: every move names it
    assert b.outside("dai", 1) == {"c"}
    b.set("c", [])
    assert b.outside("dai", 1) == set()
    assert len(b) == 2


@given(st.lists(st.tuples(st.integers(0, 30), st.one_of(st.none(), st.integers(0, 50)),
                          st.one_of(st.none(), st.integers(0, 50))), max_size=60), st.integers(-1, 51))
def test_bands_incremental_book_equals_a_rebuilt_one(edits, price):
    b = PriceBands()
    b.outside("k", 0)  # built first: every edit below goes in place
    for i, lo, hi in edits:
        b.set(acct_id(i), [("k", lo, hi)] if i % 7 else None)
    fresh = PriceBands()
    for a, bands in b.of.items():
        fresh.set(a, list(triples(bands)))
    for a in b.any:
        fresh.set(a, None)
    want = {a for a, (_, lo, hi) in b.of.items() if (lo is not None and price < lo) or (hi is not None and price > hi)}
    assert b.outside("k", price) == fresh.outside("k", price) == want | b.any


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 400), st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 9)),
                                                                  max_size=3)), max_size=300), max_size=4))
def test_book_edited_in_batches_equals_one_built_fresh(batches):
    from keeper.book import Book

    rows: dict[str, list] = {acct_id(i): [("a", i % 10)] for i in range(400)}
    book = Book(lambda a: rows.get(a, ()), rows.keys)
    book.read()
    for batch in batches:  # a few edits go by bisection, many by one pass, most by a rebuild
        for i, new in batch:
            a = acct_id(i)
            book.touch(a, rows.get(a, ()))
            rows[a] = new
        fresh = Book(lambda a: rows.get(a, ()), rows.keys)
        assert book.read() == {k: v for k, v in fresh.read().items() if v} | {
            k: [] for k, v in book.read().items() if not v}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 3_999), st.lists(st.tuples(st.sampled_from("ab"),
                                                                             st.integers(0, 2_000)), max_size=3)),
                         min_size=65, max_size=200), min_size=1, max_size=3))
def test_book_spliced_edits_equal_one_built_fresh(batches):
    """Batches of more than FEW accounts against long lists (keeper.book._edited: by slices
    when the edits are few against a list, else by one filtering pass)."""
    from keeper import book as bookmod

    rows: dict[str, list] = {acct_id(i): [("a", i % 1_000), ("b", i)] for i in range(4_000)}
    book = bookmod.Book(lambda a: rows.get(a, ()), rows.keys)
    book.read()
    for batch in batches:
        for i, new in batch:
            a = acct_id(i)
            book.touch(a, rows.get(a, ()))
            rows[a] = new
        fresh = bookmod.Book(lambda a: rows.get(a, ()), rows.keys)
        assert book.read() == {k: v for k, v in fresh.read().items() if v} | {
            k: [] for k, v in book.read().items() if not v}


def test_book_edits_few_against_long_lists_go_by_slices(monkeypatch):
    from keeper import book as bookmod

    rows: dict[str, list] = {acct_id(i): [("a", i % 1_000), ("b", i), ("b", i)] for i in range(4_000)}
    book = bookmod.Book(lambda a: rows.get(a, ()), rows.keys)
    book.read()
    for i in range(0, 4_000, 40):  # 100 accounts: more than FEW, few against 4,000 rows
        a = acct_id(i)
        book.touch(a, rows[a])
        rows[a] = [("a", 7), ("b", 4_000 - i)] if i % 80 else []

    def no_filter(*_):
        raise AssertionError("filtered, not spliced")

    monkeypatch.setattr(bookmod, "_filtered", no_filter)
    fresh = bookmod.Book(lambda a: rows.get(a, ()), rows.keys)
    assert book.read() == fresh.read()


# ------------------------------------------------------------------ Morpho Blue: exact edges


@given(morpho_cases, st.sampled_from([E18, 11 * E18 // 10, 15 * E18 // 10, 1, 3 * E18]))
def test_morpho_price_below_is_the_exact_edge(case, t):
    m, p = _morpho(case)
    edge = mt.price_below(m, p, t)
    hf = mm.health(replace(m, price=edge), p)[2] if edge < 2**200 else 0
    assert hf is not None and hf < t
    if edge < 2**200:
        above = mm.health(replace(m, price=edge + 1), p)[2]
        assert above is None or above >= t


@given(morpho_cases, st.integers(0, 2**130))
def test_morpho_band_keeps_the_status_inside(case, price):
    m, p = _morpho(case)
    status = classify(mm.health(m, p)[2], TH)
    ((key, lo, hi),) = mt.price_bands(m, m, p, *status_band(status))
    inside = (lo is None or price >= lo) and (hi is None or price <= hi)
    assert inside == (classify(mm.health(replace(m, price=price), p)[2], TH) == status)


# ------------------------------------------------------------------ Compound V3: exact edges


@settings(max_examples=300, deadline=None)
@given(comet_cases, st.lists(st.floats(0, 1), min_size=4, max_size=4), st.integers(0, 100))
def test_comet_box_keeps_the_status_for_every_price_inside_and_interest_to_the_horizon(case, where, bps):
    m, a = _comet(case)
    horizon, _ = ct.projected(m, 100)
    status = cm.position_from(m, a, TH, with_drop=False).status
    bands = ct.price_bands(m, horizon, a, *status_band(status))
    if bands is None:
        return
    prices = dict(m.prices_e8)
    for (key, lo, hi), w in zip(bands, where):
        asset = next(x for x in (USDC, WETH, WBTC) if x.lower() == key)
        p0 = prices[asset]
        lo, hi = (1 if lo is None else lo), (4 * p0 + 10 if hi is None else hi)
        assert lo <= hi
        prices[asset] = max(1, lo + int((hi - lo) * w))
    later = replace(m, prices_e8=prices, base_borrow_index=m.base_borrow_index
                    + (horizon.base_borrow_index - m.base_borrow_index) * bps // 100)
    assert cm.position_from(later, a, TH, with_drop=False).status == status


near_thresholds = st.sampled_from([10_000, 11_000, 15_000]).flatmap(lambda t: st.integers(t, t + 150))


@settings(max_examples=300, deadline=None)
@given(st.integers(10**8, 10**12), near_thresholds, st.integers(0, 100), st.lists(st.floats(0, 1), min_size=3,
       max_size=3), st.floats(0, 1))
def test_comet_bands_kept_hold_until_the_position_is_due(borrow, hf_bps, weth_pct, where, when):
    """What Ahead.keep keeps, for positions within 1.5 % of a threshold (their crossing comes
    before the horizon): every price inside the bands at every baseBorrowIndex below the
    crossing (where the position is due again) keeps its status, and they are bounded (not
    left to every price move)."""
    from keeper.protocols.compound_v3.adapter import CompoundV3
    from tests.unit.test_comet_math import market as comet_market

    m = comet_market(total_borrow=1_900_000 * 10**6)
    debt_e8 = borrow * 10**8 // 10**6
    weth = debt_e8 * hf_bps * weth_pct // 1_000_000 * 10**18 // (2_000 * 10**8) * 10**18 // (895 * 10**15)
    wbtc = debt_e8 * hf_bps * (100 - weth_pct) // 1_000_000 * 10**8 // (60_000 * 10**8) * 10**18 // (77 * 10**16)
    a = cm.CometAccount(acct_id(3), -borrow, {k: v for k, v in ((WETH, weth), (WBTC, wbtc)) if v})
    status = cm.position_from(m, a, TH, with_drop=False).status
    ahead = Ahead(CompoundV3.__new__(CompoundV3), TH)
    ahead.keep(m, a, _Pos(a.account, status))
    level = ahead.crossings.level.get(a.account)  # its crossing, or the horizon
    assert level is not None and a.account not in ahead.bands.any
    prices = dict(m.prices_e8)
    for (key, lo, hi), w in zip(triples(ahead.bands.of[a.account]), where):
        asset = next(x for x in (USDC, WETH, WBTC) if x.lower() == key)
        lo, hi = (1 if lo is None else lo), (4 * prices[asset] + 10 if hi is None else hi)
        prices[asset] = max(1, lo + int((hi - lo) * w))
    index = m.base_borrow_index + int((level - 1 - m.base_borrow_index) * when)
    later = replace(m, prices_e8=prices, base_borrow_index=max(index, m.base_borrow_index))
    assert cm.position_from(later, a, TH, with_drop=False).status == status


# ------------------------------------------------------------------ Aave V3: verified bands


SOURCE = address(99)  # an e-mode category with a price of its own
PRICED_EMODE = replace(ETH_EMODE, price_source=SOURCE, price_base=2_100 * 10**8)


def _aave_status(m, acct):
    return classify(calculate_user_account_data(m, acct).health_factor_wad, TH)


def _priced(m, key, p):
    return replace(m, reserves=tuple(replace(r, price_base=p) if r.asset.lower() == key else r for r in m.reserves),
                   emode_categories={c: replace(e, price_base=p) if e.price_source.lower() == key else e
                                     for c, e in m.emode_categories.items()})


def _price_of(m, key):
    for r in m.reserves:
        if r.asset.lower() == key:
            return r.price_base
    return next(e.price_base for e in m.emode_categories.values() if e.price_source.lower() == key)


aave_accounts = st.tuples(
    st.dictionaries(st.sampled_from([A_WETH, A_WBTC, A_USDC, WSTETH, CRV]), st.integers(1, 10**24),
                    min_size=1, max_size=3),
    st.dictionaries(st.sampled_from([A_USDC, DAI, A_WETH]), st.integers(1, 10**24), max_size=2),
    st.sampled_from([0, 1]), st.booleans())


def _aave(case):
    coll, debt, emode, priced = case
    m = market(emode=(PRICED_EMODE if priced else ETH_EMODE,))
    return m, account(coll, debt, emode=emode)


@settings(max_examples=300, deadline=None)
@given(aave_accounts, st.floats(0, 1), st.integers(-3, 3))
def test_aave_band_keeps_the_status_everywhere_inside(case, where, nudge):
    m, acct = _aave(case)
    status = _aave_status(m, acct)
    bands = ab.price_bands(m, acct, *status_band(status))
    if bands is None:
        return
    for key, lo, hi in bands:
        assert 1 <= lo <= _price_of(m, key) <= hi <= ab.CAP
        for p in (lo, hi, lo + int((hi - lo) * where) + nudge):
            if lo <= p <= hi:
                assert _aave_status(_priced(m, key, p), acct) == status, (key, lo, hi, p)


def _exact_edge(m, acct, key, status, side):
    """The first price from the current one on ``side`` where the status differs (bisection on
    the exact math; single-collateral accounts: monotone)."""
    p0 = _price_of(m, key)
    inner, outer = p0, (1 if side < 0 else p0 * 1000)
    if _aave_status(_priced(m, key, outer), acct) == status:
        return None
    while abs(outer - inner) > 1:
        mid = (inner + outer) // 2
        inner, outer = (mid, outer) if _aave_status(_priced(m, key, mid), acct) == status else (inner, mid)
    return inner


@settings(max_examples=100, deadline=None)
@given(st.integers(10**17, 10**22), st.integers(5_000, 30_000))
def test_aave_band_shares_the_room_to_the_exact_edge_with_one_collateral(weth, hf_bps):
    m = market()
    debt = weth * 2_000 * 8_250 // 10**4 * 10**6 // 10**18 * 10**4 // hf_bps  # USDC for that HF
    acct = account({A_WETH: weth}, {A_USDC: max(debt, 1)})
    status = _aave_status(m, acct)
    (key, lo, hi), (dkey, dlo, dhi) = sorted(ab.price_bands(m, acct, *status_band(status)))
    for k, got_lo, got_hi in ((key, lo, hi), (dkey, dlo, dhi)):
        p0 = _price_of(m, k)
        down, up = _exact_edge(m, acct, k, status, -1), _exact_edge(m, acct, k, status, 1)
        # inside the exact edge, and each of the two keys gets half the room to it, within 0.2 %
        if down is not None:
            assert down <= got_lo <= p0 - (p0 - down) // 2 + p0 // 500 + 4
        if up is not None:
            assert up >= got_hi >= p0 + (up - p0) // 2 - p0 // 500 - 4


# ------------------------------------------------------------------ stepped markets


def _comet_accounts(raw) -> list:
    """Comet accounts from (principal, health in bps, % of the collateral in WETH, rest WBTC)."""
    accounts = []
    for i, (p, hf_bps, weth_pct) in enumerate(raw):
        debt_e8 = max(-p, 0) * 10**8 // 10**6
        weth = debt_e8 * hf_bps * weth_pct // 1_000_000 * 10**18 // (2_000 * 10**8) * 10**18 // (895 * 10**15)
        wbtc = debt_e8 * hf_bps * (100 - weth_pct) // 1_000_000 * 10**8 // (60_000 * 10**8) * 10**18 // (77 * 10**16)
        accounts.append(cm.CometAccount(acct_id(i), p, {k: v for k, v in ((WETH, weth), (WBTC, wbtc)) if v}))
    return accounts


def _aave_accounts(raw) -> list:
    """Aave accounts near the thresholds from (WETH, health in bps, e-mode, with some WBTC)."""
    accounts = []
    for i, (weth, hf_bps, emode, wbtc) in enumerate(raw):
        debt = weth * 2_000 * 8_250 // 10**4 * 10**6 // 10**18 * 10**4 // hf_bps
        coll = {A_WETH: weth, **({A_WBTC: weth // 30 // 10**10} if wbtc else {})}
        accounts.append(replace(account(coll, {A_USDC: max(debt, 1)}, emode=emode), account=acct_id(i)))
    return accounts


def _stepped(adapter, market_, accounts, moves, status_of, reprice):
    """Evaluate every position once; then per block recompute only what Ahead names (crossings,
    or the price bands), as keeper.engine.on_block does, and compare with a full recompute."""
    ahead, status, evaluate = ahead_over(adapter, market_, accounts, status_of)
    named = []
    for move in moves:
        new = reprice(market_, move)
        level = ahead.accrued(market_, new)
        due = ahead.due(level) if level is not None else ahead.price_moved(market_, new)
        named.append(None if due is None else len(due))
        for a in accounts if due is None else [a for a in accounts if a.account in due]:
            evaluate(new, a)
        market_ = new
        assert status == {a.account: status_of(market_, a) for a in accounts}
    return named


moves = st.lists(st.tuples(st.integers(0, 5 * 86_400), st.integers(-2_500, 2_500)), max_size=10)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**22), st.integers(9_000, 17_000)), min_size=1, max_size=25), moves)
def test_morpho_price_and_interest_blocks_equal_a_full_recompute(raw, steps):
    from keeper.protocols.morpho_blue.adapter import MorphoMarketAdapter
    from tests.unit.test_morpho_math import mkt

    m = mkt(tsa=10**13, tba=9 * 10**12, price=mm.ORACLE_PRICE_SCALE // 10**12 * 2_000)
    accounts = []
    for i, (s, hf_bps) in enumerate(raw):
        s = min(s, m.total_borrow_shares)
        debt = mm.to_assets_up(s, m.total_borrow_assets, m.total_borrow_shares)
        coll = debt * hf_bps * mm.WAD // 10_000 * mm.ORACLE_PRICE_SCALE // m.params.lltv // m.price
        accounts.append(mm.MorphoPosition(acct_id(i), 0, s, coll))

    def reprice(mk, move):
        dt, bps = move
        mk = mm.accrue(mk, mk.timestamp + dt) if dt else mk
        return replace(mk, price=mk.price * (10_000 + bps) // 10_000)

    _stepped(MorphoMarketAdapter.__new__(MorphoMarketAdapter), m, accounts, steps,
             lambda mk, a: classify(mm.health(mk, a)[2], TH), reprice)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-(10**12), 10**10), st.integers(9_000, 17_000), st.integers(0, 100)),
                min_size=1, max_size=25), st.sampled_from([WETH, WBTC, USDC]), moves)
def test_comet_price_and_interest_blocks_equal_a_full_recompute(raw, asset, steps):
    from keeper.protocols.compound_v3.adapter import CompoundV3
    from tests.unit.test_comet_math import market as comet_market

    m = replace(comet_market(total_borrow=1_900_000 * 10**6), timestamp=1_000)
    accounts = _comet_accounts(raw)

    def reprice(mk, move):
        dt, bps = move
        mk = cm.accrue(mk, mk.timestamp + dt) if dt else mk
        return replace(mk, prices_e8={**mk.prices_e8, asset: max(1, mk.prices_e8[asset] * (10_000 + bps) // 10_000)})

    _stepped(CompoundV3.__new__(CompoundV3), m, accounts, steps,
             lambda mk, a: cm.position_from(mk, a, TH, with_drop=False).status, reprice)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(10**16, 10**22), st.integers(9_000, 17_000), st.sampled_from([0, 1]),
                          st.booleans()), min_size=1, max_size=25),
       st.booleans(), st.lists(st.tuples(st.sampled_from(["weth", "usdc", "source"]), st.integers(-2_500, 2_500)),
                               max_size=10))
def test_aave_price_blocks_equal_a_full_recompute_and_name_few(raw, priced, steps):
    m = market(emode=(PRICED_EMODE if priced else ETH_EMODE,))
    accounts = _aave_accounts(raw)
    keys = {"weth": A_WETH.asset.lower(), "usdc": A_USDC.asset.lower(), "source": SOURCE.lower()}

    def reprice(mk, move):
        name, bps = move
        key = keys[name] if priced or name != "source" else keys["weth"]
        return _priced(mk, key, max(1, _price_of(mk, key) * (10_000 + bps) // 10_000))

    named = _stepped(AaveV3.__new__(AaveV3), m, accounts, [(n, b) for n, b in steps], _aave_status, reprice)
    assert all(n is not None for n in named)  # one price moved: never every holder


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(10**16, 10**22), st.integers(9_000, 17_000), st.sampled_from([0, 1]),
                          st.booleans()), min_size=1, max_size=25),
       st.booleans(), st.lists(st.lists(st.tuples(st.sampled_from(["weth", "wbtc", "usdc", "source"]),
                                                  st.integers(-2_500, 2_500)), min_size=2, max_size=3),
                               max_size=8))
def test_aave_blocks_moving_several_prices_equal_a_full_recompute(raw, priced, steps):
    """Aave's bands are boxes (``price_boxes``): a block moving two or three prices at once
    (a crash moves WETH and WBTC in one block) recomputes only the accounts outside a moved
    key's band, never every holder, and the statuses equal a full recompute."""
    m = market(emode=(PRICED_EMODE if priced else ETH_EMODE,))
    accounts = _aave_accounts(raw)
    keys = {"weth": A_WETH.asset.lower(), "wbtc": A_WBTC.asset.lower(), "usdc": A_USDC.asset.lower(),
            "source": SOURCE.lower()}

    def reprice(mk, move):
        for name, bps in move:
            key = keys[name] if priced or name != "source" else keys["weth"]
            mk = _priced(mk, key, max(1, _price_of(mk, key) * (10_000 + bps) // 10_000))
        return mk

    named = _stepped(AaveV3.__new__(AaveV3), m, accounts, steps, _aave_status, reprice)
    assert all(n is not None for n in named)  # several prices moved: still never every holder


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-(10**12), 10**10), st.integers(9_000, 17_000), st.integers(0, 100)),
                min_size=1, max_size=25),
       st.lists(st.tuples(st.integers(0, 5 * 86_400), st.integers(-2_500, 2_500), st.integers(-2_500, 2_500)),
                max_size=10))
def test_comet_blocks_moving_two_prices_and_interest_equal_a_full_recompute(raw, steps):
    """Comet's bands are boxes too: WETH and WBTC moved in one block (with interest)."""
    from keeper.protocols.compound_v3.adapter import CompoundV3
    from tests.unit.test_comet_math import market as comet_market

    m = replace(comet_market(total_borrow=1_900_000 * 10**6), timestamp=1_000)
    accounts = _comet_accounts(raw)

    def reprice(mk, move):
        dt, weth_bps, wbtc_bps = move
        mk = cm.accrue(mk, mk.timestamp + dt) if dt else mk
        prices = {**mk.prices_e8, WETH: max(1, mk.prices_e8[WETH] * (10_000 + weth_bps) // 10_000),
                  WBTC: max(1, mk.prices_e8[WBTC] * (10_000 + wbtc_bps) // 10_000)}
        return replace(mk, prices_e8=prices)

    named = _stepped(CompoundV3.__new__(CompoundV3), m, accounts, steps,
                     lambda mk, a: cm.position_from(mk, a, TH, with_drop=False).status, reprice)
    assert all(n is not None for n in named)  # two prices moved: never every holder


def test_warm_builds_the_books_a_full_scan_dropped():
    from keeper.protocols.compound_v3.adapter import CompoundV3
    from tests.unit.test_comet_math import market as comet_market

    m = comet_market()
    ahead = Ahead(CompoundV3.__new__(CompoundV3), TH)
    for i in range(300):  # a scan's worth of replacements: the books are dropped
        a = cm.CometAccount(acct_id(i), -(10**9) * (i + 1), {WETH: 10**18})
        ahead.keep(m, a, _Pos(a.account, cm.position_from(m, a, TH, with_drop=False).status))
    assert ahead.bands.book.lists is None and ahead.crossings.heap is None
    ahead.warm()
    assert ahead.bands.book.lists is not None and ahead.crossings.heap is not None
    assert ahead.prices.book.lists is not None
    assert ahead.price_moved(m, replace(m, prices_e8={**m.prices_e8, WETH: m.prices_e8[WETH] * 2})) is not None
