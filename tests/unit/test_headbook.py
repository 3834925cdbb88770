"""The pushed head's fee fields (keeper.chain.headbook) and EIP-1559's next base fee
(keeper.executors.fees.next_base_fee), pure. The devnet check is in
tests/integration/test_block_path.py."""

from __future__ import annotations

from keeper.chain.headbook import HeadBook
from keeper.executors.fees import next_base_fee, next_base_fee_bound


def _header(n: int, base: int, used: int = 0, limit: int = 30_000_000) -> dict:
    return {"number": hex(n), "baseFeePerGas": hex(base), "gasUsed": hex(used), "gasLimit": hex(limit)}


def test_the_book_keeps_the_newest_head_with_a_base_fee():
    book = HeadBook()
    assert book.head is None and book.at(1) is None and book.at_least(0) is None
    book.note(_header(5, 100))
    assert book.note(_header(4, 999)).number == 5  # an older head changes nothing
    assert book.note({"number": "0x9", "gasUsed": "0x0", "gasLimit": "0x1"}) is None  # no base fee
    assert book.note({"number": "0xa"}) is None and book.head.number == 5
    assert book.at(5).base_fee == 100 and book.at(6) is None and book.at(4) is None
    assert book.at_least(5) is book.head and book.at_least(3) is book.head and book.at_least(6) is None
    book.note(_header(6, 7, 1, 2))
    assert book.head.number == 6 and (book.head.gas_used, book.head.gas_limit) == (1, 2)


def test_next_base_fee_follows_eip_1559():
    base, limit = 10**9, 30_000_000
    target = limit // 2
    assert next_base_fee(base, target, limit) == base  # at target: unchanged
    assert next_base_fee(base, 0, limit) == base * 7 // 8  # empty block: -12.5%
    assert next_base_fee(base, limit, limit) == base * 9 // 8  # full block: +12.5%
    assert next_base_fee(base, target + 1, limit) == base + max(base // target // 8, 1)  # at least +1 wei
    assert next_base_fee(7, target + 1, limit) == 8
    assert next_base_fee(base, target - 3_000_000, limit) == base - base * 3_000_000 // target // 8
    # never above the bound a burst prices for (ceil(latest * 9 / 8))
    for used in (0, target, limit, limit - 1):
        assert next_base_fee(base + 1, used, limit) <= next_base_fee_bound(base + 1)
