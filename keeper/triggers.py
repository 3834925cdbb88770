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
from bisect import bisect_left, bisect_right, insort
from collections.abc import Hashable, Iterable

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


class Crossings:
    """account -> accrual level at which its status may change, and a heap to pop them by."""

    __slots__ = ("level", "heap")

    def __init__(self) -> None:
        self.level: dict[str, int] = {}
        self.heap: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self.level)

    def set(self, account: str, level: int | None) -> None:
        """Replace ``account``'s crossing (None: interest alone never changes its status)."""
        if level is None:
            self.level.pop(account, None)
            return
        if self.level.get(account) == level:
            return
        self.level[account] = level
        heapq.heappush(self.heap, (level, account))
        if len(self.heap) > 2 * len(self.level) + 1024:  # stale entries: compact
            self.heap = [(v, a) for a, v in self.level.items()]
            heapq.heapify(self.heap)

    def due(self, level: int) -> set[str]:
        """Accounts whose crossing is at or below ``level``; they leave the book (the engine
        re-evaluates them, which sets their next crossing)."""
        out: set[str] = set()
        heap, current = self.heap, self.level
        while heap and heap[0][0] <= level:
            v, a = heapq.heappop(heap)
            if current.get(a) == v:
                del current[a]
                out.add(a)
        return out


class PriceTriggers:
    """Per (price key, falls), the positions' liquidation prices as a sorted list of
    (price, account); each account's entries are replaced in place (bisect), so a tick pays
    only for the positions it re-evaluated."""

    def __init__(self) -> None:
        self.of: dict[str, list[tuple[Hashable, int, bool]]] = {}  # account -> its triggers
        self.book: dict[tuple[Hashable, bool], list[tuple[int, str]]] = {}

    def __len__(self) -> int:
        return len(self.of)

    def set(self, account: str, triggers: list[tuple[Hashable, int, bool]]) -> None:
        """``triggers``: (price key, price, falls): liquidatable once the key's price is at or
        below ``price`` (falls) or at or above it (not falls), other prices unchanged."""
        old = self.of.get(account)
        if old == triggers:
            return
        for key, price, falls in old or ():
            rows = self.book[(key, falls)]
            i = bisect_left(rows, (price, account))
            del rows[i]
        for key, price, falls in triggers:
            insort(self.book.setdefault((key, falls), []), (price, account))
        if triggers:
            self.of[account] = triggers
        else:
            self.of.pop(account, None)

    def liquidated_by(self, key: Hashable, price: int) -> set[str]:
        """Accounts liquidatable once ``key``'s price becomes ``price`` (others unchanged)."""
        out: set[str] = set()
        falls = self.book.get((key, True))
        if falls:  # trigger >= price
            out.update(a for _, a in falls[bisect_left(falls, (price, "")):])
        rises = self.book.get((key, False))
        if rises:  # trigger <= price
            out.update(a for _, a in rises[:bisect_right(rises, (price, "\uffff"))])
        return out


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
        self.liquidatable: set[str] = set()
        self.always = {a.lower() for a in always}  # own accounts: recomputed every block
        self.mine: set[str] = set()  # the accounts of ``always`` this watch holds
        self._ahead: tuple[object, object, int | None] | None = None  # (market, projected, level)

    def _projected(self, market):
        if self._ahead is None or self._ahead[0] is not market:
            p = self.adapter.projected(market, HORIZON_BPS) if self.crossings is not None else None
            self._ahead = (market, market, None) if p is None else (market, p[0], p[1])
        return self._ahead[1], self._ahead[2]

    def keep(self, market, acct, pos) -> None:
        """After ``pos`` (of ``acct`` at ``market``) was evaluated: its next crossing and its
        liquidation prices (at the horizon: a superset until the level gets there, when the
        position is due again)."""
        a = pos.account
        if self.always and a.lower() in self.always:
            self.mine.add(a)
        if pos.status == Status.LIQUIDATABLE:
            self.liquidatable.add(a)
        else:
            self.liquidatable.discard(a)
        ahead, horizon = self._projected(market)
        if self.crossings is not None:
            t = next_threshold(pos.status, self.thresholds)
            level = None if t is None else self.adapter.crossing(market, acct, t)
            if self.prices is not None and horizon is not None:
                level = horizon if level is None else min(level, horizon)
            self.crossings.set(a, level)
        if self.prices is not None:
            self.prices.set(a, self.adapter.liquidation_prices(ahead, acct))

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

    def candidates(self, key: Hashable, price: int) -> set[str]:
        """Accounts a new ``price`` of ``key`` may make liquidatable: every one it does, and
        (interest to come within the horizon) a few that one exact evaluation clears."""
        return set() if self.prices is None else self.prices.liquidated_by(key, price)
