"""The newest head the node pushed (``newHeads``), kept for the block path's fees.

A ``newHeads`` notification carries the header: the number, ``baseFeePerGas``, ``gasUsed``
and ``gasLimit``. From them the next block's base fee is exact (EIP-1559,
keeper.executors.fees.next_base_fee), so the decision's gas price and the burst's fees need
no ``eth_gasPrice`` and no ``eth_getBlockByNumber`` while heads are pushed. Without a pushed
head (no ``[chain] ws_url``, a dropped socket, a block the socket has not announced yet)
``at`` answers None and the callers read the node as before.

``HeadBook`` lives on the Rpc (``rpc.heads``): every user of the node sees the same head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Head:
    number: int
    base_fee: int
    gas_used: int
    gas_limit: int


class HeadBook:
    def __init__(self) -> None:
        self.head: Head | None = None

    def note(self, header: dict[str, Any]) -> Head | None:
        """Keep a pushed header if it is newer; returns the newest head (None: ``header``
        lacks the fee fields, e.g. a pre-London chain, and nothing was kept)."""
        try:
            h = Head(int(header["number"], 16), int(header["baseFeePerGas"], 16),
                     int(header["gasUsed"], 16), int(header["gasLimit"], 16))
        except (KeyError, TypeError, ValueError):  # a pre-London chain or a short header
            return None
        if self.head is None or h.number > self.head.number:
            self.head = h
        return self.head

    def at_least(self, number: int) -> Head | None:
        """The newest head if it is block ``number`` or later (None: not pushed yet)."""
        return self.head if self.head is not None and self.head.number >= number else None

    def at(self, number: int) -> Head | None:
        """The head of block ``number`` exactly, if it is the newest one pushed."""
        return self.head if self.head is not None and self.head.number == number else None
