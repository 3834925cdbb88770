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
key, two sorted lists of (edge, account) (keeper.book: built when first read, then edited in
batches; ``Ahead.warm`` reads them at the end of a scan or a tick).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Iterable

from keeper.book import Book

Band = tuple[Hashable, "int | None", "int | None"]


class PriceBands:
    __slots__ = ("of", "any", "book", "_keys")

    def __init__(self) -> None:
        self.of: dict[str, tuple] = {}  # account -> its bands, flat: (key, lo, hi, key, lo, hi...)
        self.any: set[str] = set()  # accounts named by every price move
        # ("lo", key) -> sorted (lo, account); ("hi", key) -> sorted (hi, account)
        self.book = Book(lambda a: _rows(self.of.get(a, ())), self.of.keys)
        self._keys: dict[Hashable, Hashable] = {}  # one object per key (adapters make a new str each call)

    def __len__(self) -> int:
        return len(self.of) + len(self.any)

    def set(self, account: str, bands: list[Band] | tuple[Band, ...] | None) -> None:
        """Replace ``account``'s bands (None: unknown, every move names it; empty: no price
        changes its status)."""
        if bands is None:
            old = self.of.pop(account, None)
            if old is not None:
                self.book.touch(account, _rows(old))
            self.any.add(account)
            return
        self.any.discard(account)
        keys = self._keys
        bands = tuple(x for k, lo, hi in bands for x in (keys.setdefault(k, k), lo, hi))
        old = self.of.get(account)
        if old == bands:
            return
        self.book.touch(account, _rows(old or ()))
        if bands:
            self.of[account] = bands
        elif old is not None:
            del self.of[account]

    def outside(self, key: Hashable, price: int) -> set[str]:
        """Accounts whose status a new ``price`` of ``key`` (other prices as they were) may
        change: its band for ``key`` excludes ``price``, or it has no known bands."""
        lists = self.book.read()
        out = set(self.any)
        rows = lists.get(("lo", key))
        if rows:  # lo > price
            out.update(a for _, a in rows[bisect_right(rows, (price, "\uffff")):])
        rows = lists.get(("hi", key))
        if rows:  # hi < price
            out.update(a for _, a in rows[:bisect_left(rows, (price, ""))])
        return out


def _rows(flat: tuple) -> list[tuple[Hashable, int]]:
    """An account's book rows from its flat bands: (("lo", key), lo), (("hi", key), hi)."""
    out = []
    for key, lo, hi in triples(flat):
        if lo is not None:
            out.append((("lo", key), lo))
        if hi is not None:
            out.append((("hi", key), hi))
    return out


def triples(flat: tuple) -> Iterable[Band]:
    """(key, lo, hi) from a flat band tuple as ``PriceBands.of`` keeps it."""
    return zip(flat[0::3], flat[1::3], flat[2::3])
