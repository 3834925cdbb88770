"""Status bands in price, computed ahead (generic; no protocol named): for each position and
each oracle price its health reads, the closed range [lo, hi] of that price inside which its
status stays as it is, the other prices held (``MarketAdapter.price_bands``). A block whose
only moves are one key's price (and interest, where the adapter has an accrual level) then
names the positions whose status it may change with two bisections (``PriceBands.outside``)
instead of recomputing every holder of the asset.

A band is exact or narrower, never wider: a position the move leaves inside its band keeps
its status (what a full recompute would give); one outside is recomputed and may keep it
too. ``lo`` None: no lower edge; ``hi`` None: no upper edge. An account whose adapter could
not bound it (``None`` for its bands) is named by every move (``PriceBands.any``).

Memory: per position one flat tuple (key, lo, hi, key, lo, hi...; each key one shared object), per
key, two sorted lists of (edge, account), built when first asked and then kept in place
(bisect), unless more than ~1/128 of the positions changed since (a full scan, a large move):
then rebuilt when next asked (``Ahead.warm``, at the end of a scan or a tick).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Hashable, Iterable

Band = tuple[Hashable, "int | None", "int | None"]


class PriceBands:
    __slots__ = ("of", "any", "low", "high", "_pending", "_keys")

    def __init__(self) -> None:
        self.of: dict[str, tuple] = {}  # account -> its bands, flat: (key, lo, hi, key, lo, hi...)
        self.any: set[str] = set()  # accounts named by every price move
        self.low: dict[Hashable, list[tuple[int, str]]] | None = None  # key -> sorted (lo, account)
        self.high: dict[Hashable, list[tuple[int, str]]] | None = None  # key -> sorted (hi, account)
        self._pending = 0
        self._keys: dict[Hashable, Hashable] = {}  # one object per key (adapters make a new str each call)

    def __len__(self) -> int:
        return len(self.of) + len(self.any)

    def set(self, account: str, bands: list[Band] | tuple[Band, ...] | None) -> None:
        """Replace ``account``'s bands (None: unknown, every move names it; empty: no price
        changes its status)."""
        if bands is None:
            self._drop(account)
            self.any.add(account)
            return
        self.any.discard(account)
        keys = self._keys
        bands = tuple(x for k, lo, hi in bands for x in (keys.setdefault(k, k), lo, hi))
        old = self.of.get(account)
        if old == bands:
            return
        if bands:
            self.of[account] = bands
        elif old is not None:
            del self.of[account]
        self._edit(account, old, bands)

    def _drop(self, account: str) -> None:
        old = self.of.pop(account, None)
        if old is not None:
            self._edit(account, old, ())

    def _edit(self, account: str, old: tuple | None, new: tuple) -> None:
        low, high = self.low, self.high
        if low is None or high is None:
            return
        self._pending += 1
        # an edit moves a list of n rows (~50 us at 100,000), a rebuild sorts them (~60 ms):
        # past ~n/128 edits, rebuild when next asked
        if self._pending > (len(self.of) >> 7) + 64:
            self.low = self.high = None
            return
        for key, lo, hi in triples(old or ()):
            if lo is not None:
                rows = low[key]
                del rows[bisect_left(rows, (lo, account))]
            if hi is not None:
                rows = high[key]
                del rows[bisect_left(rows, (hi, account))]
        for key, lo, hi in triples(new):
            if lo is not None:
                insort(low.setdefault(key, []), (lo, account))
            if hi is not None:
                insort(high.setdefault(key, []), (hi, account))

    def _built(self) -> tuple[dict, dict]:
        if self.low is None or self.high is None:
            low: dict[Hashable, list[tuple[int, str]]] = {}
            high: dict[Hashable, list[tuple[int, str]]] = {}
            for account, bands in self.of.items():
                for key, lo, hi in triples(bands):
                    if lo is not None:
                        low.setdefault(key, []).append((lo, account))
                    if hi is not None:
                        high.setdefault(key, []).append((hi, account))
            for rows in low.values():
                rows.sort()
            for rows in high.values():
                rows.sort()
            self.low, self.high, self._pending = low, high, 0
        return self.low, self.high

    def outside(self, key: Hashable, price: int) -> set[str]:
        """Accounts whose status a new ``price`` of ``key`` (other prices as they were) may
        change: its band for ``key`` excludes ``price``, or it has no known bands."""
        low, high = self._built()
        out = set(self.any)
        rows = low.get(key)
        if rows:  # lo > price
            out.update(a for _, a in rows[bisect_right(rows, (price, "\uffff")):])
        rows = high.get(key)
        if rows:  # hi < price
            out.update(a for _, a in rows[:bisect_left(rows, (price, ""))])
        return out


def triples(flat: tuple) -> Iterable[Band]:
    """(key, lo, hi) from a flat band tuple as ``PriceBands.of`` keeps it."""
    return zip(flat[0::3], flat[1::3], flat[2::3])
