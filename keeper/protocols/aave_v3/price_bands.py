"""Aave V3 status bands in price (keeper.bands), pure: for each oracle key an account's health
reads (a reserve's asset, or its e-mode category's price source), a range [lo, hi] of that
key's price, such that the status stays as it is for *every* combination of prices inside all
of them at once (a box): a move of one key that stays inside its range leaves the account
inside its box, so later moves of other keys are still judged against valid ranges.

No search per position: with one key's price P and the rest fixed, Aave's health factor is
linear in P but for the floors, so a closed-form estimate names where it crosses the next
threshold on each side; each key gets 1/n of that room (n keys), pulled a little toward the
current price, and the box is then *verified* with bounds that hold for every price vector in
it (GenericLogic.calculateUserAccountData, on fast.py's view):

    collateral values v(P) = amount * P // unit and debts P * amount // unit rise with their
    key's price, so over the box tc, slt = sum(v * lt), td lie between their values at the
    low corner and the high corner; avgLT = slt // tc gives slt - tc < tc * avgLT <= slt, so
    percentMul(tc, avgLT) = pm lies in [(slt_lo - tc_lo + 1 + 5000) // 10000,
    (slt_hi + 5000) // 10000] (slt - tc = sum(v * (lt - 1)) rises with every price; exact when
    every counted collateral has one LT: avgLT is that LT);
    hf = (pm * WAD + td // 2) // td lies in [pm_lo * WAD // td_hi, pm_hi * WAD // td_lo + 1]
    (wadDiv itself at both ends when no debt moves).

Time: a band holds from the market's timestamp t0 to t0 + ``WINDOW_S``: each balance is
bounded by its amount at t0 and at the window's end (indexes only grow), collateral at the low
corner at t0's amount, debt at the high corner at the end's; the adapter has every position
with a band recomputed by the window's end (its interest crossing is capped there), so a
price move after time has moved the health factor is still judged against a valid band.

A box that fails its check is halved toward the current prices (a few times, then it closes
there). So a band is never wider than the truth, whatever the floored average LT does (HF is
not monotone in a price with mixed LTs, health.liquidation_price); an account the bounds cannot
pin even at the current prices (mixed LTs within ~1/LT of a threshold; outside the fast path;
a 3.6 market; a key that is both a reserve and an e-mode source at different prices) gets
None: every price move recomputes it. The price 0 stays outside every band (an e-mode price of
0 means "no override" to Aave), and so do prices from 2**96 (outside fast.py's bounds).
"""

from __future__ import annotations

from dataclasses import replace

from keeper.protocols.aave_v3.fast import BALANCE_BITS, view_for
from keeper.protocols.aave_v3.interest import view_at
from keeper.protocols.aave_v3.math36 import is_v36
from keeper.protocols.aave_v3.model import AaveAccount, AaveMarketState
from keeper.units import BPS, HALF_BPS, HALF_RAY, RAY, UINT256_MAX, WAD

CAP = (1 << 96) - 1  # the highest price a band reaches (fast.py's INDEX_PRICE_BITS)
WINDOW_S = 86_400  # a band holds this long after its market (module doc)
TRIES = 8  # halvings of an interval that fails its check before the band closes at p0


def price_bands(market: AaveMarketState, acct: AaveAccount, low: int | None,
                high: int | None) -> list[tuple[str, int, int]] | None:
    """[(key, lo, hi)] per price key the account's health reads: its status (health in
    [low, high), None: unbounded) holds for every price of that key in [lo, hi], the others as
    in ``market``. [] without debt; None where the bounds cannot tell (module doc)."""
    if is_v36(market):
        return None
    keys = _by_key(view_for(market), view_at(market, market.timestamp + WINDOW_S), acct)
    if keys is None:
        return None
    out: list[tuple[str, int, int]] = []
    if sum(k[3] for k in keys.values()) == 0:
        return out  # no debt: health None, SAFE at every price
    box = _Box(keys, low, high)
    n = len(box.keys)
    if n == 0:
        return out
    # each key's room to its estimated crossing on each side, shared among the n keys
    down = [(p0 - e) // n for p0, e in zip(box.p0, box.edges(-1))]
    up = [(e - p0) // n for p0, e in zip(box.p0, box.edges(1))]
    for _ in range(TRIES):
        lo = [p0 - d for p0, d in zip(box.p0, down)]
        hi = [p0 + u for p0, u in zip(box.p0, up)]
        if box.holds(lo, hi):
            return [(k, a, b) for k, a, b in zip(box.keys, lo, hi)]
        down, up = [d // 2 for d in down], [u // 2 for u in up]
    if box.holds(box.p0, box.p0):
        return [(k, p0, p0) for k, p0 in zip(box.keys, box.p0)]
    return None  # the bounds are too loose this close to a threshold


def _by_key(view, end, acct: AaveAccount) -> dict[str, tuple[int, int, int, int, list]] | None:
    """key -> (its price, its collateral value, value * lt, debt value, its terms), terms being
    (is_collateral, amount, unit, lt, amount at ``end``: the view at the window's end); None outside fast.py's bounds (as try_fast_totals
    checks them) or when a key would carry two prices."""
    cfg, e = acct.user_config, acct.emode
    e_lt = e_price = 0
    source = None
    if e:
        if view.emode.get(e) is None:
            return None
        _, e_lt, e_price = view.emode[e]
        source = view.sources[e][1]
    out: dict[str, tuple[int, int, int, int, list]] = {}
    res, res_end = view.reserves, end.reserves
    n = len(res)
    seen = big = 0
    for ur in acct.reserves:
        i = ur.reserve_id
        if not 0 <= i < n or not (bits := (cfg >> (i + i)) & 3):
            continue
        m = 3 << (i + i)
        if seen & m or res[i] is None or res_end[i] is None:
            return None
        seen |= m
        big |= ur.scaled_a_token | ur.scaled_variable_debt | ur.stable_debt
        income, nd, price, unit, own_lt, _, cat = res[i]
        income_end, nd_end = res_end[i][0], res_end[i][1]
        lt, key = own_lt, view.assets[i][1]
        if e and cat == e:
            lt = e_lt
            if e_price:  # the category's price overrides the asset's
                price, key = e_price, source
        p0, tc, slt, td, terms = out.get(key) or (price, 0, 0, 0, [])
        if p0 != price:
            return None
        if bits & 2 and own_lt:
            amount = (ur.scaled_a_token * income + HALF_RAY) // RAY
            v = amount * price // unit
            tc, slt = tc + v, slt + v * lt
            terms.append((True, amount, unit, lt, (ur.scaled_a_token * income_end + HALF_RAY) // RAY))
        if bits & 1:
            d = ur.scaled_variable_debt
            amount = ((d * nd + HALF_RAY) // RAY if d else 0) + ur.stable_debt
            td += price * amount // unit
            terms.append((False, amount, unit, 0, ((d * nd_end + HALF_RAY) // RAY if d else 0) + ur.stable_debt))
        out[key] = (p0, tc, slt, td, terms)
    if cfg & ~seen or big >> BALANCE_BITS:  # a bit without balances / out of bounds or < 0
        return None
    return out


class _Box:
    """The account's terms by key and the status's thresholds [low, high)."""

    __slots__ = ("keys", "p0", "terms", "low", "high", "lt", "lt_pos", "slt0", "td0", "ls", "ds")

    def __init__(self, keys: dict, low: int | None, high: int | None) -> None:
        self.low, self.high = low, high
        self.keys = [k for k, v in keys.items() if v[4]]
        self.p0 = [keys[k][0] for k in self.keys]
        self.terms = [keys[k][4] for k in self.keys]
        lts = {lt for ts in self.terms for coll, _, _, lt, _ in ts if coll}
        self.lt_pos = 0 not in lts  # v * (lt - 1) rises with the price
        self.lt = lts.pop() if len(lts) == 1 else None  # avgLT is that LT whenever tc > 0
        self.slt0 = sum(v[2] for v in keys.values())  # at the current prices, all keys
        self.td0 = sum(v[3] for v in keys.values())
        self.ls, self.ds = [], []  # per key: slopes per unit of its price, << 64
        for ts in self.terms:
            ls = ds = 0
            for coll, amount, unit, lt, _ in ts:
                if coll:
                    ls += (amount * lt << 64) // unit
                else:
                    ds += (amount << 64) // unit
            self.ls.append(ls)
            self.ds.append(ds)

    def holds(self, lo: list[int], hi: list[int]) -> bool:
        """Is the health factor inside [low, high) for every price vector with each key's
        price in [lo, hi] (1 <= lo <= hi), at every time in the window?"""
        tc_lo = tc_hi = slt_lo = slt_hi = td_lo = td_hi = 0
        for ts, p1, p2 in zip(self.terms, lo, hi):
            for coll, amount, unit, lt, end in ts:
                if coll:
                    v1, v2 = amount * p1 // unit, end * p2 // unit
                    tc_lo, tc_hi, slt_lo, slt_hi = tc_lo + v1, tc_hi + v2, slt_lo + v1 * lt, slt_hi + v2 * lt
                else:
                    td_lo, td_hi = td_lo + p1 * amount // unit, td_hi + p2 * end // unit
        lt = self.lt
        if lt is not None:
            pm_lo, pm_hi = (tc_lo * lt + HALF_BPS) // BPS, (tc_hi * lt + HALF_BPS) // BPS
        else:  # tc * avgLT > slt - tc = sum(v * (lt - 1)), which rises with every price
            pm_lo = max(0, (slt_lo - tc_lo + 1 + HALF_BPS) // BPS) if self.lt_pos else 0
            pm_hi = (slt_hi + HALF_BPS) // BPS
        if pm_hi * WAD + td_hi > UINT256_MAX:
            return False  # wadDiv may revert
        if td_lo == td_hi:  # the debt does not move: wadDiv itself, monotone in pm
            hf_lo = (pm_lo * WAD + td_lo // 2) // td_lo if td_lo else None
            hf_hi = (pm_hi * WAD + td_lo // 2) // td_lo if td_lo else None
        else:
            hf_lo = pm_lo * WAD // td_hi
            hf_hi = pm_hi * WAD // td_lo + 1 if td_lo else None
        if self.low is not None and hf_lo is not None and hf_lo < self.low:
            return False
        if self.high is not None and (hf_hi is None or hf_hi >= self.high):
            return False  # td 0 somewhere: health None, SAFE
        return True

    def edges(self, side: int) -> list[int]:
        """Per key, the estimated price on ``side`` (-1 down, +1 up) where the floor-free line
        WAD * (slt0' + P * ls) = t * BPS * (td0' + P * ds) (the key's terms at P, the rest as
        they are) crosses the nearer threshold, pulled in by 0.05 %; 1 or CAP where none is."""
        out = []
        for p0, ls, ds, ts in zip(self.p0, self.ls, self.ds, self.terms):
            end = 1 if side < 0 else CAP
            if (end - p0) * side <= 0:
                out.append(p0)
                continue
            kslt = sum(amount * p0 // unit * lt for coll, amount, unit, lt, _ in ts if coll)
            ktd = sum(p0 * amount // unit for coll, amount, unit, _, _ in ts if not coll)
            slt0, td0 = self.slt0 - kslt, self.td0 - ktd
            if not ds:  # health rises with P (collateral only) or falls (debt only)
                thresholds = (self.low,) if side < 0 else (self.high,)
            elif not ls:
                thresholds = (self.high,) if side < 0 else (self.low,)
            else:
                thresholds = (self.low, self.high)
            target = end
            for t in thresholds:
                if t is None:
                    continue
                den = WAD * ls - t * BPS * ds
                if den:
                    c = ((t * BPS * td0 - WAD * slt0) << 64) // den
                    if (c - p0) * side > 0 and (c - target) * side < 0:
                        target = c - side * (c // 2000 + 2)
                    elif (c - p0) * side <= 0 and (not ls or not ds):
                        target = p0  # one way only: this threshold is here already (floors)
                        break
            out.append(target if (target - p0) * side > 0 else p0)
        return out


def price_moved(old: AaveMarketState | None, new: AaveMarketState) -> tuple[dict[str, int], None] | None:
    """({key: new price}, None) when ``old`` -> ``new`` moved only oracle prices (reserve
    prices, e-mode category prices) besides the block and time; None otherwise."""
    if (old is None or len(old.reserves) != len(new.reserves) or old.unreliable_assets != new.unreliable_assets
            or old.emode_categories.keys() != new.emode_categories.keys()
            or replace(old, block=0, timestamp=0, reserves=(), emode_categories={})
            != replace(new, block=0, timestamp=0, reserves=(), emode_categories={})):  # fmt: skip
        return None
    moves: dict[str, int] = {}
    for o, n in zip(old.reserves, new.reserves):
        if o != n:
            if replace(o, price_base=n.price_base) != n:
                return None
            moves[n.asset.lower()] = n.price_base
    for cid, o in old.emode_categories.items():
        n = new.emode_categories[cid]
        if o != n:
            if replace(o, price_base=n.price_base) != n:
                return None
            key = n.price_source.lower()
            if moves.get(key, n.price_base) != n.price_base:
                return None
            moves[key] = n.price_base
    return moves, None
