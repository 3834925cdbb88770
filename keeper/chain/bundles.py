"""Node IO of a backrun: simulate transactions in order in one block, and hand a bundle to a
relay.

* ``simulate_in_order``: ``eth_simulateV1`` (geth, reth, anvil) runs calls one after another
  in one simulated block on top of ``latest``, each seeing the state the previous ones left:
  a pending price update, then keeper's liquidations behind it. Per call: ok, gas used,
  return data. Validation is off (the update's sender needs no balance check of ours).
* ``send_bundle``: ``eth_sendBundle`` (Flashbots' relay API: ``txs`` signed raw
  transactions, in order, for ``blockNumber``) over HTTP to a relay, keeper.devnet.relay on
  the devnet. Errors are SourceError (unreachable) or ExecutionError (refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from keeper.chain.rpc import Rpc
from keeper.errors import ExecutionError, SourceError


@dataclass(frozen=True, slots=True)
class CallResult:
    ok: bool
    gas_used: int
    data: bytes
    error: str = ""


async def simulate_in_order(rpc: Rpc, calls: list[dict[str, Any]], block: int | str = "latest") -> list[CallResult]:
    """``calls``: eth_call objects (``from``, ``to``, ``data``, ``value``, ``gas``)."""
    tag = hex(block) if isinstance(block, int) else block
    blocks = await rpc.request("eth_simulateV1", [{"blockStateCalls": [{"calls": calls}]}, tag])
    out = []
    for r in blocks[0]["calls"]:
        err = r.get("error") or {}
        out.append(CallResult(int(r["status"], 16) == 1, int(r["gasUsed"], 16),
                              bytes.fromhex((r.get("returnData") or "0x")[2:]),
                              str(err.get("message", "")) if isinstance(err, dict) else str(err)))
    return out


class RelayClient:
    """One relay endpoint (loopback on the devnet). ``url`` may carry a key: never logged."""

    def __init__(self, url: str, timeout_s: float = 5.0):
        self.url = url
        self.client = httpx.AsyncClient(timeout=timeout_s)
        self.ids = 0

    async def send_bundle(self, raw_txs: list[str], block: int, replacement_uuid: str | None = None) -> str:
        """Submit ``raw_txs`` (in order) for inclusion in ``block``; the relay's bundle id. A
        later bundle with the same ``replacement_uuid`` replaces this one."""
        self.ids += 1
        bundle = {"txs": raw_txs, "blockNumber": hex(block)}
        if replacement_uuid:
            bundle["replacementUuid"] = replacement_uuid
        body = {"jsonrpc": "2.0", "id": self.ids, "method": "eth_sendBundle", "params": [bundle]}
        try:
            r = await self.client.post(self.url, json=body)
            reply = r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise SourceError(f"eth_sendBundle: relay unreachable or malformed reply ({type(e).__name__})") from e
        if "error" in reply:
            raise ExecutionError(f"eth_sendBundle refused: {reply['error'].get('message', reply['error'])}")
        result = reply.get("result") or {}
        return str(result.get("bundleHash", "")) if isinstance(result, dict) else str(result)

    async def close(self) -> None:
        await self.client.aclose()
