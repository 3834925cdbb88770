"""Plain ``eth_call`` probes for start-up checks (keeper.preflight): a contract at an address,
and a view it must answer. A problem is a :class:`ProbeError` naming the config field."""

from __future__ import annotations

from keeper.chain.rpc import Rpc
from keeper.chain.views import view


class ProbeError(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


async def contract(rpc: Rpc, field: str, address: str, block: int) -> None:
    if not await rpc.code(address, block):
        raise ProbeError(field, f"no contract at {address}")


async def ask(rpc: Rpc, field: str, target: str, signature: str, block: int, kind: str,
              *args: bytes) -> bytes:
    try:
        return await view(rpc, target, signature, block, *args)
    except ValueError as e:
        raise ProbeError(field, f"{e}: not {kind}") from None
