"""The one seam between keeper and a node. Everything above talks to ``Rpc``.

web3.py's ``AsyncHTTPProvider`` carries the HTTP session and its own retry with
backoff (``ExceptionRetryConfiguration``); this module adds request counting (for
the bench and the logs), raw ``eth_call`` on a pinned block, and turns every
transport or JSON-RPC failure into ``SourceError`` so no library error leaks up.
The URL may carry an API key: it is never logged (see ``Rpc.__repr__``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.providers.rpc.utils import ExceptionRetryConfiguration

from keeper.errors import SourceError

_RETRY_METHODS = ("eth_call", "eth_getLogs", "eth_blockNumber", "eth_getBlockByNumber",
                  "eth_chainId", "eth_getCode", "eth_getTransactionReceipt", "eth_getBalance")


@dataclass
class RequestCounter:
    http_requests: int = 0  # round trips to the node
    rpc_calls: int = 0  # JSON-RPC method calls (a batch of 5 counts 1 and 5)


class _CountingProvider(AsyncHTTPProvider):
    def __init__(self, url: str, counter: RequestCounter, timeout_s: float):
        import aiohttp  # web3's async HTTP transport

        super().__init__(
            url,
            request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout_s)},
            exception_retry_configuration=ExceptionRetryConfiguration(
                errors=(aiohttp.ClientError, asyncio.TimeoutError), retries=3, backoff_factor=0.1, method_allowlist=list(_RETRY_METHODS)
            ),
        )
        self.counter = counter

    async def make_request(self, method: Any, params: Any) -> Any:
        self.counter.http_requests += 1
        self.counter.rpc_calls += 1
        return await super().make_request(method, params)

    async def make_batch_request(self, batch_requests: list[tuple[Any, Any]]) -> Any:
        self.counter.http_requests += 1
        self.counter.rpc_calls += len(batch_requests)
        return await super().make_batch_request(batch_requests)


def _unwrap(method: str, response: Any) -> Any:
    if not isinstance(response, dict):
        raise SourceError(f"{method}: malformed response")
    if response.get("error"):
        err = response["error"]
        msg = err.get("message", err) if isinstance(err, dict) else err
        raise SourceError(f"{method} failed: {msg}")
    if "result" not in response:
        raise SourceError(f"{method}: response has no result")
    return response["result"]


class Rpc:
    """Async JSON-RPC access to one node."""

    def __init__(self, url: str, timeout_s: float = 10.0):
        self.counter = RequestCounter()
        self.provider = _CountingProvider(url, self.counter, timeout_s)
        self.w3 = AsyncWeb3(self.provider)

    def __repr__(self) -> str:  # never show the URL: it may hold an API key
        return "Rpc(<redacted>)"

    async def request(self, method: str, params: list[Any]) -> Any:
        try:
            response = await self.provider.make_request(method, params)
        except SourceError:
            raise
        except Exception as e:  # transport errors of any kind become SourceError here
            raise SourceError(f"{method}: node unreachable or failed ({type(e).__name__})") from e
        return _unwrap(method, response)

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Several JSON-RPC calls in one HTTP round trip; results in order."""
        if not calls:
            return []
        if len(calls) == 1:
            return [await self.request(*calls[0])]
        try:
            responses = await self.provider.make_batch_request(calls)  # type: ignore[arg-type]
        except Exception as e:
            raise SourceError(f"batch of {len(calls)}: node unreachable or failed ({type(e).__name__})") from e
        if not isinstance(responses, list):
            raise SourceError(f"batch of {len(calls)} refused: {_unwrap('batch', responses)}")
        return [_unwrap(m, r) for (m, _), r in zip(calls, responses, strict=True)]

    async def chain_id(self) -> int:
        return int(await self.request("eth_chainId", []), 16)

    async def block_number(self) -> int:
        return int(await self.request("eth_blockNumber", []), 16)

    async def block(self, number: int | str = "latest") -> dict[str, Any]:
        tag = hex(number) if isinstance(number, int) else number
        result = await self.request("eth_getBlockByNumber", [tag, False])
        if result is None:
            raise SourceError(f"block {number} not found")
        return result

    async def code(self, address: str, block: int | str = "latest") -> bytes:
        tag = hex(block) if isinstance(block, int) else block
        return bytes.fromhex((await self.request("eth_getCode", [address, tag]))[2:])

    async def call(self, to: str, data: bytes, block: int | str = "latest",
                   sender: str | None = None, gas: int | None = None) -> bytes:
        """eth_call pinned to ``block``; returns the raw return data."""
        tx: dict[str, Any] = {"to": to, "data": "0x" + data.hex()}
        if sender:
            tx["from"] = sender
        if gas:
            tx["gas"] = hex(gas)
        tag = hex(block) if isinstance(block, int) else block
        return bytes.fromhex((await self.request("eth_call", [tx, tag]))[2:])

    async def calls(self, requests: list[tuple[str, bytes]], block: int,
                    overrides: dict[str, Any] | None = None) -> list[bytes]:
        """Many eth_calls at one block in one HTTP round trip (``overrides``: eth_call's
        state-override set, e.g. ``{address: {"code": "0x..."}}``)."""
        tag = hex(block)
        extra = [overrides] if overrides else []
        results = await self.batch(
            [("eth_call", [{"to": to, "data": "0x" + data.hex()}, tag, *extra])
             for to, data in requests]
        )
        return [bytes.fromhex(r[2:]) for r in results]

    async def close(self) -> None:
        try:
            await self.provider.disconnect()
        except Exception:  # closing a session that never opened is not an error worth raising
            pass
