"""Plain ``eth_call`` views for doctor checks: a revert or no data is a ValueError that names
the call (not Multicall3, so a broken Multicall3 does not hide what is wrong)."""

from __future__ import annotations

from keeper.chain.abi import call_data, string_or_bytes32
from keeper.chain.rpc import Rpc
from keeper.errors import KeeperError


async def view(rpc: Rpc, target: str, signature: str, block: int, *args: bytes,
                shown: str | None = None) -> bytes:
    """Return data of a view call, at least one word; a revert or no data is a ValueError
    that names the call."""
    what = shown or signature
    try:
        raw = await rpc.call(target, call_data(signature, *args), block)
    except KeeperError as e:
        raise ValueError(f"{target} does not answer {what}: {e}") from None
    if len(raw) < 32:
        raise ValueError(f"{target} does not answer {what} (returned {len(raw)} bytes)")
    return raw


async def symbol_of(rpc: Rpc, token: str, block: int) -> str:
    try:
        return string_or_bytes32(await rpc.call(token, call_data("symbol()"), block)) or token
    except (KeeperError, ValueError, UnicodeDecodeError):  # no symbol: the address will do
        return token


async def has_code(rpc: Rpc, address: str, block: int) -> None:
    if not await rpc.code(address, block):
        raise ValueError(f"no contract at {address}")
