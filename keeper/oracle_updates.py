"""Price updates in pending transactions, decoded (pure: no IO).

A transaction to a watched feed (or to a Chainlink forwarder that calls one) that sets a new
answer, in one of the shapes below, gives a :class:`FeedUpdate` (the feed and its new answer,
in the feed's own decimals). Anything else gives None.

| shape | selector | the answer |
|---|---|---|
| devnet ``PriceFeed.setAnswer(int256)`` | ``setAnswer(int256)`` | the argument |
| Chainlink ``MockV3Aggregator.updateAnswer(int256)`` | ``updateAnswer(int256)`` | the argument |
| OCR2 ``transmit(bytes32[3],bytes,bytes32[],bytes32[],bytes32)`` | report ``(uint32, bytes32, int192[], int192)`` | the median, ``observations[n / 2]`` (OCR2Aggregator) |
| OCR1 ``transmit(bytes,bytes32[],bytes32[],bytes32)`` | report ``(bytes32, bytes32, int192[])`` | the median, ``observations[n / 2]`` (OffchainAggregator) |
| ``forward(address,bytes)`` (AuthorizedForwarder) | the inner call to ``address`` | as above |

Signatures are not checked: the node checks them when the update is mined, and keeper
simulates its own transactions behind the update before it signs them, so a forged update
costs nothing but a simulation.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils import keccak, to_checksum_address


def _sel(signature: str) -> bytes:
    return keccak(text=signature)[:4]


SET_ANSWER = _sel("setAnswer(int256)")
UPDATE_ANSWER = _sel("updateAnswer(int256)")
OCR2_TRANSMIT = _sel("transmit(bytes32[3],bytes,bytes32[],bytes32[],bytes32)")
OCR1_TRANSMIT = _sel("transmit(bytes,bytes32[],bytes32[],bytes32)")
FORWARD = _sel("forward(address,bytes)")


@dataclass(frozen=True, slots=True)
class FeedUpdate:
    feed: str  # checksummed address of the contract whose answer changes
    answer: int  # the new answer, in the feed's own decimals


def decode_update(to: str | None, data: bytes, depth: int = 0) -> FeedUpdate | None:
    """The feed update ``data`` sent to ``to`` makes, or None when it is not one."""
    if not to or len(data) < 4 or depth > 2:
        return None
    sel, body = data[:4], data[4:]
    try:
        if sel in (SET_ANSWER, UPDATE_ANSWER):
            (answer,) = decode(["int256"], body)
        elif sel == OCR2_TRANSMIT:
            _ctx, report, _rs, _ss, _vs = decode(["bytes32[3]", "bytes", "bytes32[]", "bytes32[]", "bytes32"], body)
            _ts, _observers, observations, _juels = decode(["uint32", "bytes32", "int192[]", "int192"], report)
            answer = _median(observations)
        elif sel == OCR1_TRANSMIT:
            report, _rs, _ss, _vs = decode(["bytes", "bytes32[]", "bytes32[]", "bytes32"], body)
            _ctx, _observers, observations = decode(["bytes32", "bytes32", "int192[]"], report)
            answer = _median(observations)
        elif sel == FORWARD:
            inner_to, inner = decode(["address", "bytes"], body)
            return decode_update(inner_to, inner, depth + 1)
        else:
            return None
    except (DecodingError, ValueError, OverflowError):
        return None
    if answer is None:
        return None
    return FeedUpdate(to_checksum_address(to), answer)


def _median(observations: list[int]) -> int | None:
    """Chainlink's median: the middle of the (sorted, as transmitted) observations."""
    return observations[len(observations) // 2] if observations else None


def shock_bps(old_answer: int, new_answer: int) -> int:
    """The move from ``old`` to ``new`` in bps, floored (a fall rounds to the larger fall:
    a position at the edge is planned, and the simulation behind the update decides)."""
    if old_answer <= 0:
        raise ValueError(f"the feed's current answer must be positive, got {old_answer}")
    return (new_answer - old_answer) * 10_000 // old_answer
