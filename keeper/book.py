"""Sorted rows of (value, account) per list key, kept for bisection, edited in batches (the
price triggers' and the status bands' books: keeper.triggers, keeper.bands).

An edit does not touch the lists: it only remembers the account (and the rows the lists held
for it). The next read applies what piled up: a few accounts by bisection (an insort moves
the list's n rows, ~50 us at 100,000), many by one pass that drops their old rows and merges
their new ones (sorted apart, then one ``list.sort`` of two sorted runs, which timsort merges
in linear time): a block that recomputes thousands of positions, or a full scan, costs one
pass per list instead of thousands of insorts or a full sort.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Hashable, Iterable

Rows = Iterable[tuple[Hashable, int]]  # (list key, value) of one account
FEW = 64  # pending accounts applied one by one; more: one pass per list
SPLICE = 8  # a list edited by slices while its edits are under 1/SPLICE of its rows


class Book:
    __slots__ = ("lists", "dirty", "rows_of", "accounts", "limit")

    def __init__(self, rows_of: Callable[[str], Rows], accounts: Callable[[], Iterable[str]]) -> None:
        self.rows_of = rows_of  # the account's rows now
        self.accounts = accounts  # every account that may have rows (a full build)
        self.lists: dict[Hashable, list[tuple[int, str]]] | None = None
        self.dirty: dict[str, list[tuple[Hashable, int]]] = {}  # account -> its rows in the lists
        self.limit = FEW  # more pending than this (half the rows): forget the lists instead

    def touch(self, account: str, old: Rows) -> None:
        """``account``'s rows are about to change from ``old`` (what the lists hold)."""
        if self.lists is not None and account not in self.dirty:
            if len(self.dirty) >= self.limit:  # most of them (a full scan): rebuild in full
                self.reset()
                return
            self.dirty[account] = list(old)

    def read(self) -> dict[Hashable, list[tuple[int, str]]]:
        """The lists, up to date."""
        lists = self.lists
        if lists is None:
            lists = {}
            for a in self.accounts():
                for lk, v in self.rows_of(a):
                    lists.setdefault(lk, []).append((v, a))
            for rows in lists.values():
                rows.sort()
            self.lists, self.dirty = lists, {}
            self.limit = max(FEW, sum(map(len, lists.values())) >> 1)
            return lists
        dirty = self.dirty
        if not dirty:
            return lists
        if len(dirty) <= FEW:
            for a, old in dirty.items():
                for lk, v in old:
                    rows = lists[lk]
                    del rows[bisect_left(rows, (v, a))]
                for lk, v in self.rows_of(a):
                    insort(lists.setdefault(lk, []), (v, a))
        else:
            new: dict[Hashable, list[tuple[int, str]]] = {}
            for a in dirty:
                for lk, v in self.rows_of(a):
                    new.setdefault(lk, []).append((v, a))
            gone: dict[Hashable, list[tuple[int, str]]] = {}
            for a, old in dirty.items():
                for lk, v in old:
                    gone.setdefault(lk, []).append((v, a))
            for lk in gone.keys() | new.keys():
                lists[lk] = _edited(lists.get(lk, []), gone.get(lk, ()), new.get(lk, ()), dirty)
        self.dirty = {}
        return lists

    def reset(self) -> None:
        """Forget the lists (rebuilt in full on the next read)."""
        self.lists, self.dirty = None, {}


def _edited(rows: list[tuple[int, str]], gone: Iterable[tuple[int, str]], add: list[tuple[int, str]],
            dirty: dict) -> list[tuple[int, str]]:
    """``rows`` without the rows ``gone`` and with ``add``, sorted. Few edits against a long
    list: each found by bisection and the list rebuilt from slices between them (copies in C,
    no comparison per row); many: one filtering pass and a merge of two sorted runs."""
    add = sorted(add)
    gone = sorted(gone)
    if (len(add) + len(gone)) * SPLICE > len(rows):
        return _filtered(rows, add, dirty)
    edits: list[tuple[int, int, tuple[int, str] | None]] = []
    i, last = -1, None
    for r in gone:  # sorted: a row an account holds twice is the next one
        i = i + 1 if r == last else bisect_left(rows, r)
        if i == len(rows) or rows[i] != r:  # not where the book says: filter instead
            return _filtered(rows, add, dirty)
        edits.append((i, 1, None))
        last = r
    edits.extend((bisect_left(rows, r), 0, r) for r in add)
    edits.sort()  # by index; at one index an added row (0) before the drop (1), added rows in order
    out: list[tuple[int, str]] = []
    at = 0
    for i, kind, r in edits:
        if i > at:
            out += rows[at:i]
            at = i
        if kind:
            at = i + 1
        else:
            out.append(r)
    out += rows[at:]
    return out


def _filtered(rows: list[tuple[int, str]], add: list[tuple[int, str]], dirty: dict) -> list[tuple[int, str]]:
    """``rows`` without the accounts of ``dirty``, with ``add`` (sorted) merged in."""
    out = [r for r in rows if r[1] not in dirty]
    out.extend(add)
    out.sort()
    return out
