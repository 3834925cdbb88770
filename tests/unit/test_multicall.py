"""The hand-written aggregate3 codec agrees with eth-abi, byte for byte."""

from eth_abi import decode, encode
from hypothesis import given, strategies as st

from keeper.chain.multicall import AGGREGATE3, Call, decode_aggregate3, encode_aggregate3

addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
calls = st.lists(st.builds(Call, addresses, st.binary(max_size=100), st.booleans()), max_size=20)


@given(calls)
def test_encode_matches_eth_abi(cs):
    expected = AGGREGATE3 + encode(
        ["(address,bool,bytes)[]"], [[(c.target, c.allow_failure, c.data) for c in cs]]
    )
    assert encode_aggregate3(cs) == expected


@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=100)), max_size=20))
def test_decode_matches_eth_abi(results):
    raw = encode(["(bool,bytes)[]"], [results])
    assert decode_aggregate3(raw) == [(ok, data) for ok, data in results]
    assert decode(["(bool,bytes)[]"], raw)[0] == tuple(results)
