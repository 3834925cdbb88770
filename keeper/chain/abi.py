"""Small ABI helpers for the hot read path: selectors, one-address calls, word decoding.

Struct returns (getReserveData, latestRoundData ...) are decoded as 32-byte words,
in the order the contract returns them; dynamic returns go through eth-abi.
"""

from __future__ import annotations

from functools import cache, lru_cache

from eth_abi import decode
from eth_utils import keccak, to_checksum_address


@cache
def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


@cache
def topic(signature: str) -> bytes:
    return keccak(text=signature)


def addr_arg(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def uint_arg(value: int) -> bytes:
    return value.to_bytes(32, "big")


def call_data(signature: str, *args: bytes) -> bytes:
    return selector(signature) + b"".join(args)


def words(raw: bytes) -> list[int]:
    return [int.from_bytes(raw[i:i + 32], "big") for i in range(0, len(raw) - len(raw) % 32, 32)]


def word(raw: bytes, i: int = 0) -> int:
    if len(raw) < 32 * (i + 1):
        raise ValueError(f"return data too short for word {i}")
    return int.from_bytes(raw[32 * i:32 * i + 32], "big")


def signed_word(raw: bytes, i: int = 0) -> int:
    v = word(raw, i)
    return v - 2**256 if v >= 2**255 else v


@lru_cache(maxsize=4096)
def checksum(raw: bytes) -> str:
    """The EIP-55 form of a 20-byte address, memoized: a market's reads name the same few
    addresses every block, and each checksum is a keccak."""
    return to_checksum_address(raw)


def address_word(raw: bytes, i: int = 0) -> str:
    return checksum(raw[32 * i + 12:32 * i + 32])


def address_array(raw: bytes) -> list[str]:
    """An ABI-encoded ``address[]`` return value."""
    start = word(raw)
    n = word(raw[start:])
    if len(raw) < start + 32 * (n + 1):
        raise ValueError("return data too short for its address array")
    return [checksum(raw[start + 32 * k + 12:start + 32 * k + 32]) for k in range(1, n + 1)]


def string_or_bytes32(raw: bytes) -> str:
    """ERC-20 symbol(): a string for most tokens, bytes32 for a few old ones (MKR)."""
    if len(raw) == 32:
        return raw.rstrip(b"\0").decode("utf-8", "replace")
    return decode(["string"], raw)[0]
