"""Chunked eth_getLogs: the chunk shrinks when the node refuses a range, grows back, and
covers every block exactly once (a stand-in node at the Rpc seam, no mocks of web3)."""

from keeper.chain.logs import LogScanner
from keeper.errors import SourceError


class RangeLimitedNode:
    """Answers eth_getLogs like a provider with a block-range cap: one log per block."""

    def __init__(self, cap: int):
        self.cap = cap
        self.ranges: list[tuple[int, int]] = []
        self.refused = 0

    async def request(self, method, params):
        assert method == "eth_getLogs"
        lo, hi = int(params[0]["fromBlock"], 16), int(params[0]["toBlock"], 16)
        if hi - lo + 1 > self.cap:
            self.refused += 1
            raise SourceError("eth_getLogs failed: query exceeds max block range")
        self.ranges.append((lo, hi))
        return [{"address": "0x" + "11" * 20, "topics": ["0x" + f"{b:064x}"], "data": "0x",
                 "blockNumber": hex(b), "transactionHash": "0x" + "00" * 32, "logIndex": "0x0"}
                for b in range(lo, hi + 1)]


async def test_chunk_shrinks_to_what_the_node_accepts_and_covers_every_block():
    node = RangeLimitedNode(cap=300)
    scanner = LogScanner(node, max_range=10_000)
    logs = await scanner.fetch(["0x" + "11" * 20], [], 5, 2_004)
    assert [lg.block for lg in logs] == list(range(5, 2_005))  # each block once, in order
    assert node.refused > 0
    assert all(hi - lo + 1 <= 300 for lo, hi in node.ranges)
    assert 260 <= scanner.chunk <= 300  # settles just under the limit, remembered
    assert node.refused <= 12


async def test_yields_per_chunk_for_checkpointing():
    node = RangeLimitedNode(cap=100)
    scanner = LogScanner(node, max_range=100)
    ends = [end async for end, _ in scanner.scan([], [], 0, 349)]
    # one log per block: from a first chunk of one block the range grows x8 to the cap
    assert ends == [0, 8, 72, 172, 272, 349]


async def test_a_single_block_refused_is_an_error():
    node = RangeLimitedNode(cap=0)
    scanner = LogScanner(node, max_range=8)
    try:
        await scanner.fetch([], [], 10, 20)
    except SourceError as e:
        assert "max block range" in str(e)
    else:
        raise AssertionError("expected SourceError")


class DenseNode(RangeLimitedNode):
    """No range cap; ``per_block`` logs in every block from ``dense_from`` on, none before."""

    def __init__(self, per_block: int, dense_from: int):
        super().__init__(cap=10**9)
        self.per_block, self.dense_from = per_block, dense_from
        self.answers: list[int] = []

    async def request(self, method, params):
        lo, hi = int(params[0]["fromBlock"], 16), int(params[0]["toBlock"], 16)
        self.ranges.append((lo, hi))
        out = [{"address": "0x" + "11" * 20, "topics": ["0x" + f"{b:064x}"], "data": "0x",
                "blockNumber": hex(b), "transactionHash": "0x" + "00" * 32, "logIndex": hex(i)}
               for b in range(max(lo, self.dense_from), hi + 1) for i in range(self.per_block)]
        self.answers.append(len(out))
        return out


async def test_the_range_follows_the_density_of_logs():
    node = DenseNode(per_block=7, dense_from=30_000)
    scanner = LogScanner(node, max_range=10_000, target_logs=1_000)
    logs = await scanner.fetch([], [], 0, 39_999)
    assert [lg.block for lg in logs][::7] == list(range(30_000, 40_000))  # every log, in order
    assert node.ranges[0] == (0, 0)  # a one-block first request, before the density is known
    assert any(hi - lo + 1 == 10_000 for lo, hi in node.ranges)  # sparse: grows to the cap
    dense = [n for (lo, _), n in zip(node.ranges, node.answers) if lo >= 30_000]
    # the answer that first meets the dense range is as large as the sparse range made it;
    # from then on about target_logs per answer
    assert len(dense) > 5 and max(dense[1:]) <= 1_000 + 7


from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(st.binary(min_size=20, max_size=20))
def test_topic_account_is_eth_utils_checksum(raw):
    from eth_utils import to_checksum_address

    from keeper.chain.logs import topic_account

    assert topic_account(bytes(12) + raw) == to_checksum_address(raw)


@given(st.binary(min_size=20, max_size=20), st.booleans())
def test_checksum_is_eth_utils_checksum_in_any_case(raw, upper):
    from eth_utils import to_checksum_address

    from keeper.addresses import checksum

    text = "0x" + (raw.hex().upper() if upper else raw.hex())
    assert checksum(text) == to_checksum_address(raw)


def test_checksum_refuses_what_is_not_an_address():
    import pytest

    from keeper.addresses import checksum

    for bad in ("0x123", "ab" * 21, "0x" + "zz" * 20):
        with pytest.raises(ValueError):
            checksum(bad)
