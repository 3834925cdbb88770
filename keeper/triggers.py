"""Triggers computed ahead, generic (no protocol named): after a position is evaluated, keep
what would change its status without re-reading or recomputing it.

* ``Crossings``: interest. On a market whose positions all move with one accrual level
  (Morpho Blue's totalBorrowAssets at fixed borrow shares, Comet's baseBorrowIndex; the
  adapter's ``accrued`` / ``crossing``), each position's status can only worsen as the
  level rises, and only when its health factor falls below the next threshold. The level
  at which that happens is computed once, exactly or earlier (never later), and kept in a
  heap; a block that moved the market by interest alone recomputes only the positions
  whose crossing level has come.
* ``PriceTriggers``: prices. For each price key (an oracle asset) the prices at which each
  position becomes liquidatable (``adapter.liquidation_prices``: a collateral's price at
  or below, a debt's at or above, the other prices as they are), kept sorted, so a price
  update names the positions it liquidates with a bisection (``liquidated_by``). Where
  interest moves debts every block, the prices are computed at a horizon (the accrual
  level ``HORIZON_BPS`` ahead, ``adapter.projected``): more debt only raises a collateral's
  liquidation price and lowers a debt's, so until the level gets there the book names every
  position a price liquidates and a few that one exact evaluation clears
  (``Ahead.candidates``); reaching the horizon makes the position due like a crossing.

Both are exact only while the inputs of a position other than the level (or that one
price) stay as they were when it was evaluated; the engine re-evaluates a position
whenever those move (``MarketAdapter.moved``), and each re-evaluation replaces its entry.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Iterable
from itertools import islice

from keeper.bands import PriceBands
from keeper.book import Book
from keeper.health.status import Thresholds
from keeper.model import Status


def next_threshold(status: Status, thresholds: Thresholds) -> int | None:
    """The health factor (wad) below which a position of ``status`` changes status next
    as its health falls; None for a liquidatable one (falling health cannot change it)."""
    if status == Status.SAFE:
        return thresholds.watch_wad
    if status == Status.WATCH:
        return thresholds.at_risk_wad
    if status == Status.AT_RISK:
        return thresholds.liquidation_wad
    return None


def up_threshold(status: Status, thresholds: Thresholds) -> int | None:
    """The health factor (wad) at or above which a position of ``status`` changes status as
    its health rises; None for a safe one."""
    if status == Status.WATCH:
        return thresholds.watch_wad
    if status == Status.AT_RISK:
        return thresholds.at_risk_wad
    if status == Status.LIQUIDATABLE:
        return thresholds.liquidation_wad
    return None


class Crossings:
    """account -> accrual level at which its status may change, and a heap to pop them by
    (built when first needed; a full scan that replaces most levels just drops it)."""

    __slots__ = ("level", "heap", "_pending")

    def __init__(self) -> None:
        self.level: dict[str, int] = {}
        self.heap: list[tuple[int, str]] | None = None
        self._pending = 0  # pushes since the heap was built

    def __len__(self) -> int:
        return len(self.level)

    def set(self, account: str, level: int | None) -> None:
        """Replace ``account``'s crossing (None: interest alone never changes its status)."""
        current = self.level
        if level is None:
            current.pop(account, None)
            return
        if current.get(account) == level:
            return
        current[account] = level
        heap = self.heap
        if heap is not None:
            self._pending += 1
            if self._pending > (len(current) >> 3) + 64:  # mostly replaced: rebuild when due
                self.heap = None
            else:
                heapq.heappush(heap, (level, account))

    def due(self, level: int) -> set[str]:
        """Accounts whose crossing is at or below ``level``; they leave the book (the engine
        re-evaluates them, which sets their next crossing)."""
        heap, current = self.heap, self.level
        if heap is None:
            heap = self.heap = [(v, a) for a, v in current.items()]
            heapq.heapify(heap)
            self._pending = 0
        out: set[str] = set()
        while heap and heap[0][0] <= level:
            v, a = heapq.heappop(heap)
            if current.get(a) == v:
                del current[a]
                out.add(a)
        return out


class PriceTriggers:
    """Per (price key, falls), the positions' liquidation prices as a sorted list of
    (price, account) (keeper.book: built when first read, then edited in batches)."""

    def __init__(self) -> None:
        self.of: dict[str, tuple[tuple[Hashable, int, bool], ...]] = {}  # account -> its triggers
        self.book = Book(lambda a: _trigger_rows(self.of.get(a, ())), self.of.keys)
        self._keys: dict[Hashable, Hashable] = {}  # one object per key (adapters make a new str each call)

    def __len__(self) -> int:
        return len(self.of)

    def set(self, account: str, triggers: list[tuple[Hashable, int, bool]] | tuple) -> None:
        """``triggers``: (price key, price, falls): liquidatable once the key's price is at or
        below ``price`` (falls) or at or above it (not falls), other prices unchanged."""
        keys = self._keys
        triggers = tuple((keys.setdefault(k, k), p, f) for k, p, f in triggers)
        old = self.of.get(account)
        if old == triggers:
            return
        self.book.touch(account, _trigger_rows(old or ()))
        if triggers:
            self.of[account] = triggers
        elif old is not None:
            del self.of[account]

    def keys(self) -> set[Hashable]:
        """The price keys some position's trigger reads."""
        return {k for k, _ in self.book.read()}

    def liquidated_by(self, key: Hashable, price: int) -> set[str]:
        """Accounts liquidatable once ``key``'s price becomes ``price`` (others unchanged)."""
        book = self.book.read()
        out: set[str] = set()
        falls = book.get((key, True))
        if falls:  # trigger >= price
            out.update(a for _, a in falls[bisect_left(falls, (price, "")):])
        rises = book.get((key, False))
        if rises:  # trigger <= price
            out.update(a for _, a in rises[:bisect_right(rises, (price, "\uffff"))])
        return out


def _trigger_rows(triggers) -> list[tuple[tuple[Hashable, bool], int]]:
    return [((key, falls), price) for key, price, falls in triggers]


def overrides(adapter: object, method: str) -> bool:
    """Does ``adapter``'s class implement the optional ``method`` of MarketAdapter?"""
    from keeper.protocols.base import MarketAdapter

    return getattr(type(adapter), method, None) is not getattr(MarketAdapter, method)


HORIZON_BPS = 100  # price triggers hold for 1% of interest to come (keeper.triggers doc)


class Ahead:
    """One watch's triggers: its interest crossings (when the adapter has an accrual level)
    and its price triggers (when the adapter names liquidation prices)."""

    def __init__(self, adapter, thresholds: Thresholds, always: Iterable[str] = ()) -> None:
        self.adapter, self.thresholds = adapter, thresholds
        self.crossings = Crossings() if overrides(adapter, "crossing") else None
        self.prices = (PriceTriggers() if overrides(adapter, "liquidation_prices")
                       and adapter.price_triggers_ahead else None)
        self.bands = PriceBands() if overrides(adapter, "price_bands") else None
        t = thresholds  # a status's health band [low, high) (keeper.bands)
        self._band = {Status.LIQUIDATABLE: (None, t.liquidation_wad),
                      Status.AT_RISK: (t.liquidation_wad, t.at_risk_wad),
                      Status.WATCH: (t.at_risk_wad, t.watch_wad), Status.SAFE: (t.watch_wad, None)}
        self.liquidatable: set[str] = set()
        self.pending: dict[str, tuple] = {}  # account -> (market, acct, pos) of ``defer``
        self.always = {a.lower() for a in always}  # own accounts: recomputed every block
        self.mine: set[str] = set()  # the accounts of ``always`` this watch holds
        self._ahead: tuple[object, object, int | None] | None = None  # (market, projected, level)
        self._next = {s: next_threshold(s, thresholds) for s in Status}
        self._up = {s: up_threshold(s, thresholds) for s in Status} if overrides(adapter, "recovery") else None
        self._at = overrides(adapter, "at_level")

    def _projected(self, market):
        if self._ahead is not None and self._ahead[0] is market:
            return self._ahead[1], self._ahead[2]
        p = self.adapter.projected(market, HORIZON_BPS) if self.crossings is not None else None
        self._ahead = (market, market, None) if p is None else (market, p[0], p[1])
        return self._ahead[1], self._ahead[2]

    def keep(self, market, acct, pos) -> None:
        """After ``pos`` (of ``acct`` at ``market``) was evaluated: its next crossing and its
        liquidation prices (at the horizon: a superset until the level gets there, when the
        position is due again)."""
        self._named(pos)
        self.pending.pop(pos.account, None)
        self._keep(market, acct, pos)

    def defer(self, market, acct, pos) -> None:
        """``keep`` later (``settle``): what a decision reads is kept now (the liquidatable
        and own accounts); until settled the account is named by ``stale`` (the engine
        recomputes it at every block: its old triggers may be wrong, it is never missed)."""
        self._named(pos)
        self.pending[pos.account] = (market, acct, pos)

    def settle(self, n: int | None = None) -> int:
        """``keep`` up to ``n`` deferred positions (None: all), oldest first; returns how many."""
        pending = self.pending
        take = list(islice(pending.items(), n))  # n None: all
        for a, (market, acct, pos) in take:
            del pending[a]
            self._keep(market, acct, pos)
        return len(take)

    def stale(self) -> set[str]:
        """Accounts whose triggers are not kept yet (``defer``): every block recomputes them."""
        return set(self.pending)

    def _named(self, pos) -> None:
        a = pos.account
        if self.always and a.lower() in self.always:
            self.mine.add(a)
        if pos.status is Status.LIQUIDATABLE:
            self.liquidatable.add(a)
        elif self.liquidatable:
            self.liquidatable.discard(a)

    def _keep(self, market, acct, pos) -> None:
        a, status = pos.account, pos.status
        ahead, horizon = self._projected(market)
        crossings, until = self.crossings, ahead
        if crossings is not None:
            t = self._next[status]
            level = None if t is None else self.adapter.crossing(market, acct, t)
            if self._up is not None and (u := self._up[status]) is not None:  # interest may also raise it
                r = self.adapter.recovery(market, acct, u)
                level = r if level is None or (r is not None and r < level) else level
            if horizon is not None and (self.prices is not None or self.bands is not None):
                if level is not None and level <= horizon and self._at:  # due at its crossing: bands hold until then
                    until = self.adapter.at_level(market, level - 1)
                level = horizon if level is None or horizon < level else level
            crossings.set(a, level)
        if self.prices is not None:
            self.prices.set(a, self.adapter.liquidation_prices(ahead, acct))
        if self.bands is not None:
            self.bands.set(a, self.adapter.price_bands(market, until, acct, *self._band[status]))

    def accrued(self, old, new) -> int | None:
        """The accrual level when only interest moved the market (None: recompute as usual)."""
        return None if self.crossings is None else self.adapter.accrued(old, new)

    def due(self, level: int) -> set[str]:
        """Who a block that moved the market by interest alone, to ``level``, must recompute:
        positions whose crossing (or price-trigger horizon) has come, the liquidatable ones
        (their plans read fresh values) and own accounts (``[[protect]]`` triggers are not
        thresholds)."""
        out = self.crossings.due(level) if self.crossings is not None else set()
        return out | self.liquidatable | self.mine

    def due_at(self, market) -> set[str]:
        """After a block that was not interest alone: the crossings that came anyway, where
        the adapter's level says crossings outlive other moves (``MarketAdapter.level``)."""
        lv = None if self.crossings is None else self.adapter.level(market)
        return set() if lv is None else self.crossings.due(lv)

    def price_moved(self, old, new) -> set[str] | None:
        """Who a block that moved oracle prices (and interest) must recompute: positions
        whose status band a new price leaves (keeper.bands), crossings come, the
        liquidatable and own accounts. Several prices at once only where the bands are boxes
        (``adapter.price_boxes``: a position inside every moved key's band is inside its box,
        the other keys being where they were). None when the adapter has no bands, or the move
        is not prices and interest alone, or several prices without boxes (the engine then
        recomputes every holder)."""
        if self.bands is None:
            return None
        moved = self.adapter.price_moved(old, new)
        if moved is None or (len(moved[0]) > 1 and not self.adapter.price_boxes):
            return None
        (prices, level), out = moved, set()
        for key, price in prices.items():
            out |= self.bands.outside(key, price)
        if level is not None and self.crossings is not None:
            out |= self.crossings.due(level)
        return out | self.liquidatable | self.mine

    def warm(self) -> None:
        """Build what a full scan left to be rebuilt (the crossings' heap, the sorted books),
        at the end of the scan rather than in the next block tick."""
        if self.crossings is not None:
            self.crossings.due(-1)
        if self.prices is not None:
            self.prices.liquidated_by(None, 0)
        if self.bands is not None:
            self.bands.outside(None, 0)

    def candidates(self, key: Hashable, price: int) -> set[str]:
        """Accounts a new ``price`` of ``key`` may make liquidatable: every one it does, and
        (interest to come within the horizon) a few that one exact evaluation clears."""
        return self.stale() | (set() if self.prices is None else self.prices.liquidated_by(key, price))
