"""EIP-55 checksums, fast: discovery checksums every borrower of every log (150,000 borrowers:
~650,000 calls), and eth_utils.to_checksum_address spends most of its time in validation
layers around the hash (~4x this)."""

from __future__ import annotations

from Crypto.Hash import keccak


def checksum_hex(hex40: str) -> str:
    """EIP-55 of 40 lowercase hex digits (no 0x)."""
    h = keccak.new(digest_bits=256, data=hex40.encode()).digest().hex()
    return "0x" + "".join([c if h[i] < "8" else c.upper() for i, c in enumerate(hex40)])


def checksum(address: str) -> str:
    """EIP-55 of a 0x-prefixed 20-byte hex address in any case; ValueError otherwise."""
    if len(address) != 42 or address[:2] not in ("0x", "0X"):
        raise ValueError(f"not a 20-byte hex address: {address!r}")
    low = address[2:].lower()
    int(low, 16)  # ValueError when not hex
    return checksum_hex(low)
