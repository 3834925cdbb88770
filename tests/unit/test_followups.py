"""keeper.followups and Aave's ``after_liquidation`` on hand-built markets (pure), and the
executors' rule for follow-ups: sent right behind their predecessor in the same batch, never
on their own. The chain itself is the judge in tests/integration/test_followups.py."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from hypothesis import given, settings, strategies as st

from keeper.decide import Policy, decide, liquidations_due
from keeper.executors.actions import ActionExecutor
from keeper.executors.results import action_key
from keeper.health.status import DEFAULT_THRESHOLDS
from keeper.followups import MAX_PER_ACCOUNT, by_bid, spent, with_followups
from keeper.model import Approval, Liquidate, TxStep
from keeper.prices import PriceBook
from keeper.protocols.aave_v3.adapter import AaveV3
from keeper.protocols.aave_v3.after import after_liquidation
from keeper.protocols.aave_v3.health import position_from
from keeper.protocols.aave_v3.liquidation import plan_liquidation, user_reserve
from keeper.protocols.aave_v3.liquidation36 import plan_liquidation36
from keeper.protocols.aave_v3.math import get_normalized_debt, get_normalized_income, ray_mul
from keeper.protocols.aave_v3.math36 import a_token_balance, normalized_debt, normalized_income, v_token_balance
from keeper.protocols.base import PlanContext
from keeper.units import RAY, WAD
from tests.unit.test_health_builders import POOL, USDC, DAI, WBTC, WETH, account, market

E18, E8, E6 = 10**18, 10**8, 10**6
ME = "0x00000000000000000000000000000000000000Bb"


class Loaded(AaveV3):
    """The Aave adapter with its Pool known (encode needs it; no chain here)."""

    def _pool(self) -> str:
        return POOL


ADAPTER = Loaded(None, None, None, POOL, "m")


def two_pairs(weth_price: int = 1_400 * E8):
    """WETH + WBTC collateral, USDC + DAI debt, HF about 0.9: the first liquidation takes one
    pair, the account is still liquidatable after it."""
    m = market(replace(WETH, price_base=weth_price), replace(WBTC, price_base=42_000 * E8), USDC, DAI)
    acct = account({WETH: 6 * E18, WBTC: E8 // 10}, {USDC: 6_000 * E6, DAI: 6_000 * E18})
    return m, acct


def ctx(wallet, gas_usd_e8=0) -> PlanContext:
    return PlanContext(ME, wallet, gas_usd_e8, 0, PriceBook())


RICH = {USDC.asset: 10**12, DAI.asset: 10**24}


def test_a_two_pair_account_gets_its_follow_up_planned_on_the_state_after_the_first():
    m, acct = two_pairs()
    pos = position_from(m, acct)
    decisions, _ = decide(ADAPTER, m, [], liquidations_due(Policy({}, liquidate=True), [pos]),
                          {acct.account: acct}, RICH, ctx(RICH))
    assert len(decisions) >= 2 and [d.follows for d in decisions] == list(range(len(decisions)))
    first, second = decisions[:2]
    after_m, after_a = after_liquidation(m, acct, first)
    assert position_from(after_m, after_a).health_factor_wad == second.health_factor_wad < WAD
    assert second.block == first.block and second.reason.startswith("follow-up 1 of")
    q1, q2 = first.quote[0], second.quote[0]
    assert (q1.collateral_asset, q1.debt_asset) != (q2.collateral_asset, q2.debt_asset)
    # its own action: "#2", which no step of the first ("...:1") can collide with
    assert action_key(second) == action_key(first) + "#2"
    assert len({action_key(d) for d in decisions}) == len(decisions)


def test_follow_ups_stop_at_the_bound_the_wallet_and_the_gas():
    m, acct = two_pairs()
    pos = position_from(m, acct)
    first = ADAPTER.plan_liquidations(m, [pos], {acct.account: acct}, ctx(RICH))
    assert len(with_followups(ADAPTER, m, first, {acct.account: acct}, ctx(RICH), limit=1)) == 1
    assert len(with_followups(ADAPTER, m, first, {acct.account: acct}, ctx(RICH))) <= MAX_PER_ACCOUNT
    # the wallet holds only what the first repays: the follow-up cannot repay the same token
    (d,) = first
    q = d.quote[0]
    just = {q.debt_asset: q.debt_to_repay}
    chained = with_followups(ADAPTER, m, first, {acct.account: acct}, ctx(just))
    assert all(x.quote[0].debt_asset != q.debt_asset for x in chained[1:])
    # a gas cost above any follow-up's bonus: none
    assert with_followups(ADAPTER, m, first, {acct.account: acct}, ctx(RICH, gas_usd_e8=10**15)) == first


def test_one_wallet_pays_every_liquidation_of_a_tick_once():
    """Several accounts due at once: each is planned with what the wallet has left once the
    ones before it are paid, follow-ups included (before, each was planned with the whole
    wallet, and the ones past its balance failed in simulation and waited a tick)."""
    m = market(replace(WETH, price_base=1_400 * E8), USDC)
    accts = [replace(account({WETH: 6 * E18}, {USDC: 8_000 * E6}), account=f"0x{i:040x}")
             for i in (0xA1, 0xA2, 0xA3)]
    due = liquidations_due(Policy({}, liquidate=True), [position_from(m, a) for a in accts])
    assert len(due) == 3
    alone = ADAPTER.plan_liquidations(m, due[:1], {a.account: a for a in accts}, ctx(RICH))
    need = alone[0].quote[0].debt_to_repay  # what one account's liquidation repays, unbounded
    wallet = {USDC.asset: need * 3 // 2}  # pays one and a half of them
    decisions, _ = decide(ADAPTER, m, [], due, {a.account: a for a in accts}, wallet, ctx(wallet))
    repaid = [d.quote[0].debt_to_repay for d in decisions]
    assert sum(repaid) <= wallet[USDC.asset]
    assert repaid[0] == need and 0 < repaid[1] <= need - need // 2 + 1 and len(decisions) == 2
    # rich: every account gets its full liquidation, and its follow-ups
    rich, _ = decide(ADAPTER, m, [], due, {a.account: a for a in accts}, RICH, ctx(RICH))
    assert {d.account for d in rich} == {a.account for a in accts}


def test_spent_takes_the_approvals_from_the_wallet_whatever_the_case_of_the_keys():
    w = {USDC.asset.lower(): 100, DAI.asset: 5}
    steps = [TxStep(POOL, b"", "x", (Approval(USDC.asset, POOL, 30), Approval(DAI.asset, POOL, 9)))]
    assert spent(w, steps) == {USDC.asset.lower(): 70, DAI.asset: 0}


def test_no_follow_up_for_capital_free_routes_or_unpredicted_states():
    m, acct = two_pairs()
    (d,) = ADAPTER.plan_liquidations(m, [position_from(m, acct)], {acct.account: acct}, ctx(RICH))
    flash = replace(d, route="capital-free: flash USDC; sell WETH via pool")
    assert with_followups(ADAPTER, m, [flash], {acct.account: acct}, ctx(RICH)) == [flash]
    assert after_liquidation(m, acct, flash) is None
    stable = account({WETH: 6 * E18, WBTC: E8 // 10}, {USDC: 6_000 * E6}, stable={USDC: E6})
    assert after_liquidation(m, stable, replace(d, quote=(replace(d.quote[0], debt_asset=USDC.asset), False))) is None


VIRTUAL = 10**30  # 3.6: each reserve's virtual underlying balance


def _indexed(m, ts_gap: int):
    """``m`` with interest running (rates set, indexes above 1 ray, ``ts_gap`` seconds later)."""
    rs = tuple(replace(r, liquidity_index_ray=RAY + RAY // 37, variable_borrow_index_ray=RAY + RAY // 11,
                       current_liquidity_rate_ray=RAY // 29, current_variable_borrow_rate_ray=RAY // 13,
                       virtual_underlying=VIRTUAL if m.version == (3, 6) else None)
               for r in m.reserves)
    return replace(m, reserves=rs, timestamp=m.timestamp + ts_gap)


@settings(max_examples=150, deadline=None)
@given(weth_e2=st.integers(900, 1_700), gap=st.integers(0, 10**7), v36=st.booleans(),
       debt_share=st.integers(1, 99))
def test_balances_after_fall_by_what_the_liquidation_moves(weth_e2, gap, v36, debt_share):
    """Whatever the prices, indexes and version: once the predicted liquidation is mined, the
    borrower's debt balance fell by what was repaid and its collateral by what was taken
    (to the liquidator and the treasury), each within the rounding of a scaled balance."""
    m0, _ = two_pairs(weth_e2 * E8)
    m = _indexed(replace(m0, version=(3, 6)) if v36 else m0, gap)
    acct = account({WETH: 6 * E18, WBTC: E8 // 10},
                   {USDC: 120 * debt_share * E6, DAI: 120 * (100 - debt_share) * E18})
    pos = ADAPTER.evaluator(m).position(acct, DEFAULT_THRESHOLDS, False)
    planned = ADAPTER.plan_liquidations(m, [pos], {acct.account: acct}, ctx(RICH)) if pos.health_factor_wad \
        and pos.health_factor_wad < WAD else []
    for d in planned:
        after = after_liquidation(m, acct, d)
        assert after is not None
        m2, a2 = after
        q = d.quote[0]  # what the chain does with the calldata keeper sends (its debtToCover)
        q = (plan_liquidation36(m, acct, q.collateral_asset, q.debt_asset, q.debt_to_cover) if v36
             else plan_liquidation(m, acct, q.collateral_asset, q.debt_asset, q.debt_to_repay))
        coll, debt = m.by_asset(q.collateral_asset), m.by_asset(q.debt_asset)
        inc = normalized_income(coll, m.timestamp) if v36 else get_normalized_income(coll, m.timestamp)
        idx = normalized_debt(debt, m.timestamp) if v36 else get_normalized_debt(debt, m.timestamp)
        bal = (lambda s: a_token_balance(s, inc)) if v36 else (lambda s: ray_mul(s, inc))
        dbt = (lambda s: v_token_balance(s, idx)) if v36 else (lambda s: ray_mul(s, idx))
        c0, c1 = bal(user_reserve(acct, coll.id).scaled_a_token), bal(user_reserve(a2, coll.id).scaled_a_token)
        d0, d1 = dbt(user_reserve(acct, debt.id).scaled_variable_debt), dbt(user_reserve(a2, debt.id).scaled_variable_debt)
        assert abs((c0 - c1) - q.collateral_taken) <= 2
        if d0 - q.debt_to_repay > 0 and (a2.user_config >> (2 * debt.id)) & 1:
            assert abs((d0 - d1) - q.debt_to_repay) <= 2
        if v36:  # the virtual balances follow the tokens that moved
            assert m2.by_asset(debt.asset).virtual_underlying == VIRTUAL + q.debt_to_repay
            assert m2.by_asset(coll.asset).virtual_underlying == VIRTUAL - q.collateral_to_receive


class _Burst:
    def __init__(self):
        self.runs: list[list] = []

    def takes(self, d, adapter):
        return TxStep(POOL, b"", "liquidate")

    async def run(self, batch, adapter, market):
        self.runs.append([(d.follows, slots) for d, slots, _ in batch])


def test_a_follow_up_rides_with_its_predecessor_and_never_alone():
    m, acct = two_pairs()
    ds = with_followups(ADAPTER, m, ADAPTER.plan_liquidations(m, [position_from(m, acct)], {acct.account: acct},
                                                              ctx(RICH)), {acct.account: acct}, ctx(RICH))
    assert len(ds) >= 2

    async def go(busy: set[str]):
        ex = object.__new__(ActionExecutor)
        ex.in_flight, ex.tasks, ex.burst = set(busy), set(), _Burst()
        started = ex.submit(ds, ADAPTER, m)
        await asyncio.gather(*ex.tasks)
        return started, ex.burst.runs, ex.in_flight
    slot = f"m:{acct.account}"
    started, runs, in_flight = asyncio.run(go(set()))
    # one batch, in order: the first, then its follow-ups, not blocked by the first's slot
    assert started == len(ds) and runs == [[(n, {slot}) for n in range(len(ds))]] and in_flight == {slot}
    # the account already in flight (an earlier tick's liquidation not yet broadcast): none of them
    started, runs, _ = asyncio.run(go({slot}))
    assert started == 0 and runs == []


def test_a_restart_tells_a_follow_up_from_its_predecessor_and_from_their_steps():
    """Recovery finds an action's journal rows by key ("key", "key:1", ...): a follow-up's
    rows ("key#2") are never taken for the first's, nor the other way round."""
    from keeper.executors.recovery import _step_index
    m, acct = two_pairs()
    ds = with_followups(ADAPTER, m, ADAPTER.plan_liquidations(m, [position_from(m, acct)], {acct.account: acct},
                                                              ctx(RICH)), {acct.account: acct}, ctx(RICH))
    first, second = action_key(ds[0]), action_key(ds[1])
    assert _step_index(first, second) is None and _step_index(second, first) is None
    assert _step_index(first, first + ":1") == 1 and _step_index(second, second + ":1") == 1
    assert _step_index(second, first + ":1") is None


def test_a_later_backrun_takes_over_the_accounts_of_one_not_sent_yet():
    """Two updates of one block, seen one after the other: the second backrun plans again the
    accounts of the first that are not sent yet (behind both updates, with their follow-ups);
    the first then sends only what is still its own, and the slot is freed once, by its owner."""
    from keeper.executors.backrun import BackrunSender, Ready

    class Ex:
        in_flight: set[str] = set()
        tasks: set = set()
        tx = None

    m, acct = two_pairs()
    ds = with_followups(ADAPTER, m, ADAPTER.plan_liquidations(m, [position_from(m, acct)], {acct.account: acct},
                                                              ctx(RICH)), {acct.account: acct}, ctx(RICH))
    other = replace(ds[0], accounts=("0x00000000000000000000000000000000000000Cc",))
    slot = f"m:{acct.account}"

    async def go():
        sender = BackrunSender(Ex(), None)
        started = asyncio.Event()

        async def hold(todo, adapter, market, updates, latest=None, batch=0):
            await started.wait()
        sender._run = hold
        assert sender.submit([ds[0], other], ADAPTER, m, []) == 2
        assert sender.replaceable() == {slot, f"m:{other.account}"}
        assert sender.submit(ds, ADAPTER, m, []) == len(ds)  # the account again, with its follow-ups
        first = [Ready(d, [], {f"m:{d.account}"}, batch=1) for d in (ds[0], other)]
        assert [r.d for r in sender._keep(first, 1)] == [other]  # the first keeps only the other account
        sender._free({slot}, 1)  # the first's end does not free what the second holds
        assert slot in Ex.in_flight and sender.replaceable() == {slot}
        second = [Ready(d, [], {slot}, batch=2) for d in ds]
        assert len(sender._keep(second, 2)) == len(ds) and sender.replaceable() == set()
        # once handed to the submitter, nothing can be taken over: a third backrun skips it
        assert sender.submit(ds, ADAPTER, m, []) == 0
        sender._free({slot}, 2)
        assert slot not in Ex.in_flight
        started.set()
    asyncio.run(go())


def test_decisions_go_out_by_bid_with_each_follow_up_after_its_predecessor():
    m, acct = two_pairs()
    first = ADAPTER.plan_liquidations(m, [position_from(m, acct)], {acct.account: acct}, ctx(RICH))[0]
    chain = with_followups(ADAPTER, m, [first], {acct.account: acct}, ctx(RICH))
    assert len(chain) >= 2
    big = replace(first, accounts=("0x00000000000000000000000000000000000000Cc",), profit_usd_e8=10**15)
    small = replace(first, accounts=("0x00000000000000000000000000000000000000Dd",), profit_usd_e8=1)
    rich_follow_up = replace(chain[1], profit_usd_e8=10**16)  # worth more than the one it follows
    got = by_bid([small, *chain[:1], rich_follow_up, *chain[2:], big])
    assert got[0] is big  # the highest bid first: nothing of lower worth holds it back
    assert got.index(chain[0]) < got.index(rich_follow_up)  # never before its predecessor
    assert got[-1] is small and len(got) == len(chain) + 2


def _by_bid_reference(decisions):
    """by_bid as first written (quadratic): among the liquidations whose predecessor is placed,
    the most profitable next, the first of equals."""
    liqs = [d for d in decisions if isinstance(d, Liquidate)]
    out = [d for d in decisions if not isinstance(d, Liquidate)]
    placed = set()
    while liqs:
        free = [d for d in liqs if d.follows == 0 or (d.accounts, d.follows - 1) in placed]
        best = max(free, key=lambda d: d.profit_usd_e8)
        liqs.remove(best)
        placed.add((best.accounts, best.follows))
        out.append(best)
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 4), st.lists(st.integers(0, 20), min_size=4, max_size=4)),
                max_size=12), st.randoms(use_true_random=False))
def test_by_bid_equals_the_quadratic_reference(chains, rnd):
    m, acct = two_pairs()
    first = ADAPTER.plan_liquidations(m, [position_from(m, acct)], {acct.account: acct}, ctx(RICH))[0]
    decisions, owners = [], set()
    for who, length, profits in chains:
        owner = (f"0x{who:040x}",)
        if owner in owners:
            continue
        owners.add(owner)
        for k in range(length):  # a chain: the first, then its follow-ups
            decisions.append(replace(first, accounts=owner, follows=k, profit_usd_e8=profits[k]))
    rnd.shuffle(decisions)  # any order the planner gives, each follow-up after its predecessor:
    decisions.sort(key=lambda d: d.follows)  # (a stable sort keeps the shuffle among equals)
    assert [id(d) for d in by_bid(decisions)] == [id(d) for d in _by_bid_reference(decisions)]


def test_one_wallet_pays_every_morpho_liquidation_of_a_tick_once():
    """Morpho Blue's planner, likewise: the loan token the wallet holds is spent position by
    position (a position the rest cannot pay for profitably is left for a later tick)."""
    from keeper.health.status import Status
    from keeper.model import Position
    from keeper.protocols.morpho_blue import math as mm
    from keeper.protocols.morpho_blue.plan import liquidations
    from tests.unit.test_morpho_math import E6 as M6, USDC as M_USDC, mkt, pos as mpos

    m = mkt(price=1_000 * 10**24)  # WETH at $1,000: 1 WETH against 1,000 USDC of debt, LLTV 86%
    owners = [f"0x{i:040x}" for i in (0xB1, 0xB2, 0xB3)]
    accts = {a: replace(mpos(debt=1_000 * M6), account=a) for a in owners}
    due = [Position("morpho_blue", m.id, a, m.block, 1, 1, 9 * 10**17, 8600, Status.LIQUIDATABLE, True)
           for a in owners]
    book = PriceBook()
    book.learn({M_USDC: ("USDC", 10**8)})
    need = mm.max_liquidation(m, accts[owners[0]]).repaid_assets
    wallet = {M_USDC: need * 3 // 2}
    planned = liquidations("m", m, due, accts, PlanContext(ME, wallet, 0, 0, book), 6)
    repaid = [d.quote.repaid_assets for d in planned]
    assert sum(repaid) <= wallet[M_USDC] and repaid[0] == need and len(planned) == 2
    rich = liquidations("m", m, due, accts, PlanContext(ME, {M_USDC: 10**18}, 0, 0, book), 6)
    assert [d.quote.repaid_assets for d in rich] == [need] * 3


def test_capital_free_liquidations_of_a_tick_are_planned_on_the_pools_the_ones_before_moved():
    """Two accounts sold through one Uniswap V3 pool in the same burst: the second is planned on
    the pool the first one's sale leaves (exact V3 math), which is what its simulation, run
    after the first, meets (before, both were planned on the pool as read, and the second
    reverted in simulation and waited a tick)."""
    from keeper.dex.capital_free import FlashSource
    from keeper.dex.liquidator import FLASH_MORPHO
    from keeper.dex.v3_pool import swap_exact_input
    from keeper.dex.view import CapitalFree, DexView
    from tests.unit.test_dex_math import CHAIN_POOL  # WETH/USDC 0.3%, WETH about $2,000

    m = market(replace(WETH, price_base=1_400 * E8), USDC)
    pool = replace(CHAIN_POOL, token0=WETH.asset, token1=USDC.asset)
    dex = DexView("0x" + "44" * 20, m.block, 10**10, {(WETH.asset.lower(), USDC.asset.lower(), 3000): pool},
                  {USDC.asset.lower(): (FlashSource(FLASH_MORPHO, "0x" + "33" * 20, 10**30),)})
    accts = {f"0x{i:040x}": replace(account({WETH: 6 * E18}, {USDC: 8_000 * E6}), account=f"0x{i:040x}")
             for i in (0xC1, 0xC2)}
    due = liquidations_due(Policy({}, liquidate=True), [position_from(m, a) for a in accts.values()])
    planned = ADAPTER.plan_liquidations(m, due, accts, replace(ctx({}), dex=dex))  # no wallet: all capital-free
    assert len(planned) == 2 and all(isinstance(d.quote, CapitalFree) for d in planned)
    first, second = (d.quote.liq.plan for d in planned)
    assert first.amount_in == second.amount_in > 0  # the same position twice
    moved = swap_exact_input(pool, True, first.amount_in).pool
    assert first.amount_out == swap_exact_input(pool, True, first.amount_in).amount_out
    assert second.amount_out == swap_exact_input(moved, True, second.amount_in).amount_out < first.amount_out
