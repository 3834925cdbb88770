"""keeper.chain.abi's hand decoders equal eth-abi's decoding, checksummed (EIP-55)."""

from __future__ import annotations

import random

import pytest
from eth_abi import decode, encode
from eth_utils import to_checksum_address

from keeper.chain.abi import address_array, address_word, checksum


def test_address_array_equals_eth_abi_for_every_length():
    rng = random.Random(7)
    for n in range(0, 9):
        addresses = ["0x" + rng.randbytes(20).hex() for _ in range(n)]
        raw = encode(["address[]"], [addresses])
        assert address_array(raw) == [to_checksum_address(a) for a in decode(["address[]"], raw)[0]]


def test_address_array_refuses_short_data():
    raw = encode(["address[]"], [["0x" + "11" * 20] * 3])
    with pytest.raises(ValueError, match="too short"):
        address_array(raw[:-32])


def test_checksum_and_address_word_are_eip55():
    raw = encode(["address", "address"], ["0x" + "ab" * 20, "0x" + "0c" * 20])
    assert address_word(raw, 1) == to_checksum_address(decode(["address", "address"], raw)[1]) != "0x" + "0c" * 20
    assert checksum(bytes.fromhex("ab" * 20)) == to_checksum_address(decode(["address"], raw[:32])[0])
